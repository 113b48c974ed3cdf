//! Standard output for a reader that may go away: `cmwq monitor | head -1`
//! closes the pipe after one line, and `println!` would panic on the next
//! write ("failed printing to stdout").
//!
//! Every line the commands print goes through [`out!`](crate::out) and
//! [`outln!`](crate::outln). A write that fails because the reader closed
//! the pipe (`EPIPE`; Rust ignores `SIGPIPE`, so it arrives as
//! [`io::ErrorKind::BrokenPipe`]) ends the process at once and quietly with
//! exit status 0: the reader took what it wanted, which is success for a
//! pipeline (as `grep`'s and `rg`'s quiet exit), also under `set -o
//! pipefail`. Any other write error (a full disk, `>/dev/full`) is
//! reported on stderr and the status is 1.

use std::fmt;
use std::io::{self, Write};

/// The exit status when stdout's reader has gone away.
pub const CLOSED_PIPE_STATUS: i32 = 0;

/// Write `args` to stdout; on a closed pipe end the process quietly.
pub fn print(args: fmt::Arguments<'_>) {
    if let Err(e) = io::stdout().lock().write_fmt(args) {
        gone(e);
    }
}

/// Flush stdout (after each object or table a slow command prints, so a
/// reader sees it at once); on a closed pipe end the process quietly.
pub fn flush() {
    if let Err(e) = io::stdout().lock().flush() {
        gone(e);
    }
}

/// Print `value` as one line of JSON and flush.
pub fn json(value: &impl serde::Serialize) {
    match serde_json::to_string(value) {
        Ok(line) => {
            print(format_args!("{line}\n"));
            flush();
        }
        Err(e) => {
            eprintln!("cmwq: JSON: {e}");
            std::process::exit(1);
        }
    }
}

/// End the process after a failed write to stdout.
fn gone(e: io::Error) -> ! {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(CLOSED_PIPE_STATUS);
    }
    eprintln!("cmwq: writing to stdout: {e}");
    std::process::exit(1);
}

/// `print!` to stdout that ends the process quietly on a closed pipe.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::print(format_args!($($arg)*))
    };
}

/// `println!` to stdout that ends the process quietly on a closed pipe.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::out::print(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
