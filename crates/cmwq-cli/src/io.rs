//! Real blocking I/O for the demo's blocking batch.
//!
//! A work item that reads from a pipe or a socket blocks in the kernel
//! until someone writes. [`DelayedPeer`] is that someone: a plain thread
//! (not a worker) that answers each pipe or TCP connection with one byte,
//! a fixed delay after the item asked. The work items never tell the
//! library that they block; finding out is the library's job (G15).

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

/// A writer to answer with one byte at `due`.
struct Reply {
    out: Box<dyn Write + Send>,
    due: Instant,
}

/// The far end of the demo's pipes and sockets: it writes one byte into
/// each, `delay` after the request.
pub struct DelayedPeer {
    delay: Duration,
    replies: Sender<Reply>,
    addr: SocketAddr,
}

impl DelayedPeer {
    /// Start the responder thread and a loopback TCP server that accepts
    /// `tcp_conns` connections and hands each one to the responder. Both
    /// threads end by themselves once the peer is dropped and the
    /// connections have been served.
    pub fn start(delay: Duration, tcp_conns: usize) -> io::Result<DelayedPeer> {
        let (replies, rx) = mpsc::channel::<Reply>();
        thread::Builder::new()
            .name("demo-peer".into())
            .spawn(move || respond(rx))?;

        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let addr = listener.local_addr()?;
        let to_responder = replies.clone();
        thread::Builder::new()
            .name("demo-tcp-server".into())
            .spawn(move || {
                for conn in listener.incoming().take(tcp_conns) {
                    let Ok(stream) = conn else { continue };
                    let due = Instant::now() + delay;
                    let _ = to_responder.send(Reply {
                        out: Box::new(stream),
                        due,
                    });
                }
            })?;
        Ok(DelayedPeer {
            delay,
            replies,
            addr,
        })
    }

    /// Create a pipe, give its write end to the responder and block in
    /// `read` until the byte arrives, `delay` later.
    pub fn pipe_roundtrip(&self) -> io::Result<()> {
        let (mut reader, writer) = io::pipe()?;
        self.ask(Box::new(writer))?;
        reader.read_exact(&mut [0u8; 1])
    }

    /// Connect to the loopback server and block in `read` until it
    /// replies, `delay` after accepting.
    pub fn tcp_roundtrip(&self) -> io::Result<()> {
        let mut stream = TcpStream::connect(self.addr)?;
        stream.read_exact(&mut [0u8; 1])
    }

    fn ask(&self, out: Box<dyn Write + Send>) -> io::Result<()> {
        let due = Instant::now() + self.delay;
        self.replies
            .send(Reply { out, due })
            .map_err(|_| io::Error::other("the demo's responder thread is gone"))
    }
}

/// The responder thread: answers each reply when it falls due (all share
/// one delay, so they fall due in arrival order). Returns once every
/// sender is gone and nothing is left to answer.
fn respond(rx: mpsc::Receiver<Reply>) {
    let mut waiting: VecDeque<Reply> = VecDeque::new();
    let mut open = true;
    loop {
        let now = Instant::now();
        while waiting.front().is_some_and(|r| r.due <= now) {
            if let Some(mut r) = waiting.pop_front() {
                // The reader may have given up; nothing to do about it here.
                let _ = r.out.write_all(b"!");
            }
        }
        let next = waiting.front().map(|r| r.due - now);
        match (next, open) {
            (None, false) => return,
            (Some(wait), false) => thread::sleep(wait),
            (None, true) => match rx.recv() {
                Ok(r) => waiting.push_back(r),
                Err(_) => open = false,
            },
            (Some(wait), true) => match rx.recv_timeout(wait) {
                Ok(r) => waiting.push_back(r),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            },
        }
    }
}

/// Write `chunks` chunks of 256 KiB to a new file at `path`, `fsync`ing
/// after each, then remove it: blocks for as long as the storage takes.
pub fn fsync_file(path: &Path, chunks: usize) -> io::Result<()> {
    let chunk = vec![0x5a_u8; 256 * 1024];
    let result = (|| {
        let mut f = File::create(path)?;
        for _ in 0..chunks {
            f.write_all(&chunk)?;
            f.sync_data()?;
        }
        f.sync_all()
    })();
    let _ = fs::remove_file(path);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_answers_after_the_delay() {
        let delay = Duration::from_millis(30);
        let peer = DelayedPeer::start(delay, 1).unwrap();
        let t = Instant::now();
        peer.pipe_roundtrip().unwrap();
        assert!(t.elapsed() >= delay);
        let t = Instant::now();
        peer.tcp_roundtrip().unwrap();
        assert!(t.elapsed() >= delay);
    }

    #[test]
    fn fsync_file_cleans_up() {
        let path = std::env::temp_dir().join(format!("cmwq-cli-test-{}", std::process::id()));
        fsync_file(&path, 1).unwrap();
        assert!(!path.exists());
    }
}
