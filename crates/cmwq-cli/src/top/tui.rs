//! The live view: a full-screen view (ratatui on crossterm) of the pools
//! and threads tables, sampled and redrawn every second, scrolled with the
//! arrow and page keys; the terminal is restored on every way out, a
//! panic included.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::{cursor, execute};
use ratatui::backend::CrosstermBackend;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};
use ratatui::{Frame, Terminal};

use super::model::{build, Sample, Snapshot};
use super::proc::State;
use super::target::{clk_tck, first_sample, sample, Target};
use super::text::POOL_HEADINGS;
use super::TopError;

/// How often the live view samples.
const REFRESH: Duration = Duration::from_secs(1);
/// How long the live view stays up after the watched process exited.
const EXIT_LINGER: Duration = Duration::from_secs(2);

/// Whether the terminal is in raw mode on the alternate screen, so that
/// exactly one of the drop guard and the panic hook restores it.
static TERM_ACTIVE: AtomicBool = AtomicBool::new(false);

/// Leave the alternate screen, show the cursor, leave raw mode (once).
fn restore_terminal() {
    if TERM_ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = terminal::disable_raw_mode();
        let _ = execute!(io::stdout(), LeaveAlternateScreen, cursor::Show);
    }
}

/// Restores the terminal when dropped, on every way out of the live view.
struct TermGuard;

impl TermGuard {
    /// Raw mode, alternate screen, hidden cursor; and a panic hook that
    /// restores the terminal before the panic message is printed.
    fn enter() -> io::Result<TermGuard> {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            prev(info);
        }));
        terminal::enable_raw_mode()?;
        TERM_ACTIVE.store(true, Ordering::SeqCst);
        let guard = TermGuard;
        execute!(io::stdout(), EnterAlternateScreen, cursor::Hide)?;
        Ok(guard)
    }
}

impl Drop for TermGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// The threads table's scroll position.
#[derive(Debug, Default)]
pub(super) struct View {
    /// The first row shown.
    pub(super) scroll: usize,
    /// Rows that fit, as of the last draw.
    pub(super) page: usize,
    /// Rows in all, as of the last draw.
    pub(super) rows: usize,
}

impl View {
    /// The largest useful scroll position.
    fn max_scroll(&self) -> usize {
        self.rows.saturating_sub(self.page.max(1))
    }

    /// Move for a scrolling key; false for other keys.
    pub(super) fn key(&mut self, code: KeyCode) -> bool {
        let page = self.page.max(1);
        self.scroll = match code {
            KeyCode::Up | KeyCode::Char('k') => self.scroll.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => self.scroll + 1,
            KeyCode::PageUp => self.scroll.saturating_sub(page),
            KeyCode::PageDown | KeyCode::Char(' ') => self.scroll + page,
            KeyCode::Home | KeyCode::Char('g') => 0,
            KeyCode::End | KeyCode::Char('G') => usize::MAX,
            _ => return false,
        };
        self.scroll = self.scroll.min(self.max_scroll());
        true
    }
}

/// `q`, Esc, Ctrl-C (which raw mode delivers as a key).
pub(super) fn is_quit(k: &KeyEvent) -> bool {
    match k.code {
        KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => true,
        KeyCode::Char('c') | KeyCode::Char('d') => k.modifiers.contains(KeyModifiers::CONTROL),
        _ => false,
    }
}

/// The style of a state cell; without `colour` (`NO_COLOR`), only the
/// bold of a running worker is left.
pub(super) fn state_style(s: &State, colour: bool) -> Style {
    let style = match s {
        State::Running => Style::new().fg(Color::Green).add_modifier(Modifier::BOLD),
        State::Blocked(_) | State::BlockedD => Style::new().fg(Color::Yellow),
        State::Idle => Style::new().fg(Color::DarkGray),
        _ => Style::new(),
    };
    if colour {
        style
    } else {
        Style { fg: None, ..style }
    }
}

/// A right-aligned cell.
fn right(s: String) -> Cell<'static> {
    Cell::from(Text::from(s).right_aligned())
}

/// Draw one screen: header, pools table, threads table, footer. Colour
/// only where `NO_COLOR` allows it; bold and reverse video stay.
pub(super) fn draw(f: &mut Frame, snap: &Snapshot, view: &mut View) {
    let colour = crate::util::colour_allowed();
    let area = f.area();
    let mut header = vec![Line::from(Span::styled(
        snap.title(),
        Style::new().add_modifier(Modifier::BOLD),
    ))];
    if snap.exited {
        header.push(Line::from(Span::styled(
            "process exited: press any key (quits by itself in 2 s)",
            if colour {
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
            } else {
                Style::new().add_modifier(Modifier::BOLD)
            },
        )));
    }
    match &snap.note {
        Some(note) => header.push(Line::from(format!("note: {note}"))),
        None => header.push(Line::from(
            "states from /proc: running (R), idle (parked in cmwq's futex wait), \
             blocked (in another system call, or D)",
        )),
    }
    let header_h = header.len() as u16 + 2;
    let pool_h = (snap.groups.len() as u16 + 3).min((area.height / 3).max(4));
    let [h_area, p_area, t_area, f_area] = Layout::vertical([
        Constraint::Length(header_h),
        Constraint::Length(pool_h),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);

    f.render_widget(
        Paragraph::new(header)
            .wrap(ratatui::widgets::Wrap { trim: true })
            .block(Block::bordered().title(" cmwq top ")),
        h_area,
    );

    let bold = Style::new().add_modifier(Modifier::BOLD);
    let pool_rows: Vec<Row> = snap
        .groups
        .iter()
        .map(|g| {
            let c = g.cells();
            let [label, rest @ ..] = c;
            let mut cells = vec![Cell::from(label)];
            cells.extend(rest.into_iter().map(right));
            Row::new(cells)
        })
        .collect();
    let shown = (p_area.height as usize).saturating_sub(3);
    let pools_title = if snap.groups.len() > shown {
        format!(" pools ({} more not shown) ", snap.groups.len() - shown)
    } else {
        " pools ".into()
    };
    let pools = Table::new(
        pool_rows,
        [
            Constraint::Length(16),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Length(9),
            Constraint::Length(8),
        ],
    )
    .header(
        Row::new(
            POOL_HEADINGS
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    if i == 0 {
                        Cell::from(*h)
                    } else {
                        right((*h).to_string())
                    }
                })
                .collect::<Vec<_>>(),
        )
        .style(bold),
    )
    .block(Block::bordered().title(pools_title));
    f.render_widget(pools, p_area);

    // The threads table: the group's label on its first row only.
    view.page = (t_area.height as usize).saturating_sub(3).max(1);
    view.rows = snap.threads.len();
    view.scroll = view.scroll.min(view.max_scroll());
    let mut prev_group = None;
    let all: Vec<Row> = snap
        .threads
        .iter()
        .map(|t| {
            let label = if prev_group == Some(t.group) {
                String::new()
            } else {
                prev_group = Some(t.group);
                t.group.label()
            };
            let [tid, name, state, cpu, last, item] = t.cells();
            Row::new(vec![
                Cell::from(label).style(bold),
                right(tid),
                Cell::from(name),
                Cell::from(state).style(state_style(&t.state, colour)),
                right(cpu),
                right(last),
                Cell::from(format!(" {item}")),
            ])
        })
        .collect();
    let rows: Vec<Row> = all.into_iter().skip(view.scroll).take(view.page).collect();
    let threads = Table::new(
        rows,
        [
            Constraint::Length(12),
            Constraint::Length(8),
            Constraint::Length(16),
            Constraint::Length(26),
            Constraint::Length(7),
            Constraint::Length(9),
            Constraint::Min(10),
        ],
    )
    .header(
        Row::new(vec![
            Cell::from("POOL"),
            right("TID".into()),
            Cell::from("NAME"),
            Cell::from("STATE"),
            right("CPU%".into()),
            right("LAST CPU".into()),
            Cell::from(" ITEM"),
        ])
        .style(bold),
    )
    .block(Block::bordered().title(" workers and threads "));
    f.render_widget(threads, t_area);

    let first = if view.rows == 0 { 0 } else { view.scroll + 1 };
    let last = (view.scroll + view.page).min(view.rows);
    let footer = format!(
        " q quit   Up/Down PgUp/PgDn Home/End scroll   rows {first}-{last} of {}   refresh {} s",
        view.rows,
        REFRESH.as_secs()
    );
    f.render_widget(
        Paragraph::new(footer).style(Style::new().add_modifier(Modifier::REVERSED)),
        f_area,
    );
}

/// Why the live view ended.
enum End {
    /// The user quit.
    Quit,
    /// The watched process exited.
    Exited,
}

/// The live view: sample every `REFRESH`, draw, handle keys.
pub(super) fn run_live(pid: u32) -> Result<(), TopError> {
    let (target, first) = first_sample(pid)?;
    let clk = clk_tck();
    let end = {
        let _guard = TermGuard::enter()?;
        let mut term = Terminal::new(CrosstermBackend::new(io::stdout()))?;
        term.clear()?;
        live_loop(&mut term, target, first, clk)?
    };
    if let End::Exited = end {
        eprintln!("cmwq top: process {pid} exited");
    }
    Ok(())
}

/// The refresh loop, on an entered terminal.
fn live_loop(
    term: &mut Terminal<CrosstermBackend<io::Stdout>>,
    target: Target,
    first: Sample,
    clk: u64,
) -> Result<End, TopError> {
    let mut view = View::default();
    let mut snap = build(target.pid, None, &first, clk);
    let mut prev = first;
    let mut next = Instant::now() + REFRESH;
    let mut quit_at: Option<Instant> = None;
    loop {
        term.draw(|f| draw(f, &snap, &mut view))?;
        let wake = quit_at.unwrap_or(next);
        if event::poll(wake.saturating_duration_since(Instant::now()))? {
            if let Event::Key(k) = event::read()? {
                if k.kind != KeyEventKind::Release {
                    if quit_at.is_some() {
                        return Ok(End::Exited);
                    }
                    if is_quit(&k) {
                        return Ok(End::Quit);
                    }
                    view.key(k.code);
                }
            }
            // Resizes and other events: just redraw.
        }
        let now = Instant::now();
        if let Some(at) = quit_at {
            if now >= at {
                return Ok(End::Exited);
            }
            continue;
        }
        if now >= next {
            match sample(target) {
                Ok(s) => {
                    snap = build(target.pid, Some(&prev), &s, clk);
                    prev = s;
                }
                Err(TopError::Exited(_)) => {
                    snap.exited = true;
                    quit_at = Some(now + EXIT_LINGER);
                }
                Err(e) => return Err(e),
            }
            next = now + REFRESH;
        }
    }
}
