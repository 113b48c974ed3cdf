//! The figures of a run and their three renderings: text tables on stdout,
//! JSON (`--json`), Markdown (`--md`, for BENCHMARKS.md).
//!
//! A scenario returns a [`Table`]: rows of named cells, one row per system
//! (or per system and configuration, in a `group`), notes, optional
//! preformatted lines (B5's timelines), and the checks of its BENCHMARKS.md
//! target, each MET or MISSED. The ratio column compares one metric of each
//! row with the cmwq row of the same group.

use std::fmt::Write as _;

/// A cell: a number or a short text.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Num(f64),
    Text(String),
}

/// One row: a system (and configuration) and its figures.
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub system: String,
    /// Rows are compared with the cmwq row of the same group.
    pub group: Option<String>,
    pub cells: Vec<(String, Value)>,
}

impl Row {
    pub fn new(system: impl Into<String>) -> Row {
        Row {
            system: system.into(),
            ..Row::default()
        }
    }

    pub fn group(mut self, g: impl Into<String>) -> Row {
        self.group = Some(g.into());
        self
    }

    /// Add (or replace) a numeric cell.
    pub fn num(mut self, key: &str, v: f64) -> Row {
        self.set(key, Value::Num(v));
        self
    }

    /// Add (or replace) a text cell.
    pub fn text(mut self, key: &str, v: impl Into<String>) -> Row {
        self.set(key, Value::Text(v.into()));
        self
    }

    pub fn set(&mut self, key: &str, v: Value) {
        match self.cells.iter_mut().find(|(k, _)| k == key) {
            Some(c) => c.1 = v,
            None => self.cells.push((key.to_owned(), v)),
        }
    }

    /// The numeric cell `key`, if any.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.cells.iter().find_map(|(k, v)| match v {
            Value::Num(x) if k == key => Some(*x),
            _ => None,
        })
    }

    /// The text cell `key`, if any.
    pub fn get_text(&self, key: &str) -> Option<String> {
        self.cells.iter().find_map(|(k, v)| match v {
            Value::Text(x) if k == key => Some(x.clone()),
            _ => None,
        })
    }

    /// Whether this is one of cmwq's rows.
    pub fn is_cmwq(&self) -> bool {
        self.system.starts_with("cmwq")
    }
}

/// Combine repetitions of one measurement: numeric cells become their
/// median, text cells keep the first repetition's value.
pub fn median_row(reps: &[Row]) -> Row {
    let first = reps.first().cloned().unwrap_or_default();
    let mut out = Row {
        system: first.system.clone(),
        group: first.group.clone(),
        cells: Vec::new(),
    };
    for (k, v) in &first.cells {
        match v {
            Value::Num(_) => {
                let xs: Vec<f64> = reps.iter().filter_map(|r| r.get(k)).collect();
                out.set(k, Value::Num(crate::util::median(&xs)));
            }
            Value::Text(t) => out.set(k, Value::Text(t.clone())),
        }
    }
    out
}

/// One check of a BENCHMARKS.md target.
#[derive(Clone, Debug)]
pub struct Check {
    /// What is checked, e.g. "makespan with the hint <= 1.15x ideal".
    pub what: String,
    /// The measured figure, e.g. "1.07x".
    pub measured: String,
    pub met: bool,
}

/// The result of one scenario.
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// "B1".."B9".
    pub id: String,
    pub title: String,
    /// BENCHMARKS.md's target for the scenario, quoted.
    pub target: String,
    /// The metric compared with cmwq in the ratio column (or several,
    /// comma separated: see [`Table::compute_ratios`]).
    pub ratio_of: Option<String>,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    /// Preformatted lines printed after the table (timelines).
    pub lines: Vec<String>,
    pub checks: Vec<Check>,
}

/// The key of the ratio column.
pub const RATIO: &str = "vs_cmwq";

impl Table {
    pub fn new(id: &str, title: &str, target: &str) -> Table {
        Table {
            id: id.into(),
            title: title.into(),
            target: target.into(),
            ..Table::default()
        }
    }

    pub fn note(&mut self, s: impl Into<String>) {
        self.notes.push(s.into());
    }

    pub fn check(&mut self, what: impl Into<String>, measured: impl Into<String>, met: bool) {
        self.checks.push(Check {
            what: what.into(),
            measured: measured.into(),
            met,
        });
    }

    /// The first row whose system starts with `prefix` (and in `group`, if
    /// given).
    pub fn row(&self, prefix: &str, group: Option<&str>) -> Option<&Row> {
        self.rows.iter().find(|r| {
            r.system.starts_with(prefix) && (group.is_none() || r.group.as_deref() == group)
        })
    }

    /// Fill the ratio column: each row's `ratio_of` metric divided by that
    /// of the first cmwq row of its group. `ratio_of` may list several
    /// metrics separated by commas (tables whose groups measure different
    /// things): a row uses the first one it has.
    pub fn compute_ratios(&mut self) {
        let Some(metrics) = self.ratio_of.clone() else {
            return;
        };
        let metrics: Vec<&str> = metrics.split(',').collect();
        let ratios: Vec<Option<f64>> = self
            .rows
            .iter()
            .map(|r| {
                let m = metrics.iter().find(|m| r.get(m).is_some())?;
                let base = self
                    .rows
                    .iter()
                    .find(|b| b.is_cmwq() && b.group == r.group)?
                    .get(m)?;
                let v = r.get(m)?;
                (base != 0.0 && base.is_finite() && v.is_finite()).then(|| v / base)
            })
            .collect();
        for (r, ratio) in self.rows.iter_mut().zip(ratios) {
            if let Some(x) = ratio {
                r.set(RATIO, Value::Num(x));
            }
        }
    }

    /// Column keys in order of first appearance, the ratio last.
    fn columns(&self) -> Vec<String> {
        let mut cols: Vec<String> = Vec::new();
        for r in &self.rows {
            for (k, _) in &r.cells {
                if k != RATIO && !cols.contains(k) {
                    cols.push(k.clone());
                }
            }
        }
        if self.rows.iter().any(|r| r.get(RATIO).is_some()) {
            cols.push(RATIO.into());
        }
        cols
    }

    fn has_groups(&self) -> bool {
        self.rows.iter().any(|r| r.group.is_some())
    }

    fn header(&self, col: &str) -> String {
        match (col, &self.ratio_of) {
            (RATIO, Some(m)) => format!("{} vs cmwq", m.replace(',', " or ")),
            _ => col.to_owned(),
        }
    }

    /// The table as rows of strings, header first.
    fn grid(&self) -> Vec<Vec<String>> {
        let cols = self.columns();
        let groups = self.has_groups();
        let mut head = vec!["system".to_owned()];
        if groups {
            head.push("group".into());
        }
        head.extend(cols.iter().map(|c| self.header(c)));
        let mut out = vec![head];
        for r in &self.rows {
            let mut line = vec![r.system.clone()];
            if groups {
                line.push(r.group.clone().unwrap_or_default());
            }
            for c in &cols {
                let cell = r.cells.iter().find(|(k, _)| k == c).map(|(_, v)| v);
                line.push(match cell {
                    None => "-".into(),
                    Some(Value::Text(t)) => t.clone(),
                    Some(Value::Num(x)) if c == RATIO => format!("{x:.2}x"),
                    Some(Value::Num(x)) => fmt_num(*x),
                });
            }
            out.push(line);
        }
        out
    }

    /// Plain text for the terminal.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "== {}: {}", self.id, self.title);
        let grid = self.grid();
        let ncol = grid[0].len();
        let width: Vec<usize> = (0..ncol)
            .map(|i| grid.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        let text_cols = if self.has_groups() { 2 } else { 1 };
        for (n, row) in grid.iter().enumerate() {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let pad = width[i] - cell.chars().count();
                if i < text_cols {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                } else {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                }
                line.push_str("  ");
            }
            let _ = writeln!(s, "{}", line.trim_end());
            if n == 0 {
                let total: usize = width.iter().sum::<usize>() + 2 * (ncol - 1);
                let _ = writeln!(s, "{}", "-".repeat(total));
            }
        }
        for l in &self.lines {
            let _ = writeln!(s, "{l}");
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        let _ = writeln!(s, "target: {}", self.target);
        for c in &self.checks {
            let _ = writeln!(
                s,
                "  {}: {} (measured {})",
                if c.met { "MET" } else { "MISSED" },
                c.what,
                c.measured
            );
        }
        s
    }

    /// A Markdown section.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "## {}: {}\n", self.id, self.title);
        let _ = writeln!(s, "Target (BENCHMARKS.md): {}\n", self.target);
        for c in &self.checks {
            let _ = writeln!(
                s,
                "- **{}**: {} (measured {})",
                if c.met { "MET" } else { "MISSED" },
                c.what,
                c.measured
            );
        }
        if !self.checks.is_empty() {
            s.push('\n');
        }
        let grid = self.grid();
        let text_cols = if self.has_groups() { 2 } else { 1 };
        for (n, row) in grid.iter().enumerate() {
            let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
            let _ = writeln!(s, "| {} |", cells.join(" | "));
            if n == 0 {
                let sep: Vec<&str> = (0..row.len())
                    .map(|i| if i < text_cols { "---" } else { "---:" })
                    .collect();
                let _ = writeln!(s, "|{}|", sep.join("|"));
            }
        }
        if !self.lines.is_empty() {
            s.push_str("\n```text\n");
            for l in &self.lines {
                let _ = writeln!(s, "{l}");
            }
            s.push_str("```\n");
        }
        if !self.notes.is_empty() {
            s.push('\n');
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s
    }

    /// A JSON object.
    pub fn to_json(&self) -> String {
        let mut s = String::from("{");
        let _ = write!(
            s,
            "\"scenario\":{},\"title\":{},\"target\":{},\"ratio_of\":{},\"rows\":[",
            json_str(&self.id),
            json_str(&self.title),
            json_str(&self.target),
            self.ratio_of.as_deref().map_or("null".into(), json_str)
        );
        for (i, r) in self.rows.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "{{\"system\":{}", json_str(&r.system));
            if let Some(g) = &r.group {
                let _ = write!(s, ",\"group\":{}", json_str(g));
            }
            for (k, v) in &r.cells {
                let _ = write!(s, ",{}:{}", json_str(k), json_value(v));
            }
            s.push('}');
        }
        s.push_str("],\"notes\":");
        s.push_str(&json_strs(&self.notes));
        s.push_str(",\"timeline\":");
        s.push_str(&json_strs(&self.lines));
        s.push_str(",\"targets\":[");
        for (i, c) in self.checks.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(
                s,
                "{{\"check\":{},\"measured\":{},\"met\":{}}}",
                json_str(&c.what),
                json_str(&c.measured),
                c.met
            );
        }
        s.push_str("]}");
        s
    }
}

/// A number for a table: about four significant digits, no exponent.
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    let a = x.abs();
    if a == 0.0 {
        return "0".into();
    }
    if x.fract() == 0.0 && a < 1e15 {
        return format!("{x:.0}");
    }
    let decimals = if a >= 1000.0 {
        0
    } else {
        (3 - a.log10().floor() as i32).clamp(0, 9) as usize
    };
    format!("{x:.decimals$}")
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_strs(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| json_str(s)).collect();
    format!("[{}]", items.join(","))
}

fn json_value(v: &Value) -> String {
    match v {
        Value::Num(x) if x.is_finite() => format!("{x}"),
        Value::Num(_) => "null".into(),
        Value::Text(t) => json_str(t),
    }
}

/// The `--json` file: an array of the tables.
pub fn json(tables: &[Table]) -> String {
    let items: Vec<String> = tables.iter().map(Table::to_json).collect();
    format!("[\n{}\n]\n", items.join(",\n"))
}

/// The `--md` file (BENCHMARKS.md).
/// Target checks met, and all target checks, over `tables`.
pub fn targets_met(tables: &[Table]) -> (usize, usize) {
    let checks = tables.iter().flat_map(|t| &t.checks);
    (checks.clone().filter(|c| c.met).count(), checks.count())
}

pub fn markdown(tables: &[Table], machine: &str, command: &str) -> String {
    let mut s = String::from("# cmwq benchmarks\n\n");
    s.push_str(
        "Generated by the harness (`crates/cmwq-bench`); do not edit by hand. \
         Scenarios and targets are those of BENCHMARKS.md. Every system of a table \
         was measured in the same run; figures are medians of the repetitions; \
         the ratio column divides each row's figure by that of the cmwq row of \
         its group.\n\n",
    );
    let _ = writeln!(s, "Command: `{command}`\n");
    let _ = writeln!(s, "Machine: {machine}\n");
    let (met, all) = targets_met(tables);
    let _ = writeln!(s, "Targets: {met} of {all} checks met.\n");
    for t in tables {
        s.push_str(&t.to_markdown());
        s.push('\n');
    }
    s
}

/// The line that separates the hand-written reading of BENCHMARKS.md
/// from the part the harness generates.
pub const GENERATED_MARK: &str =
    "<!-- Everything below is generated by cmwq-bench --md; edit above this line only. -->";

/// The BENCHMARKS.md page: the hand-written part of `old` (everything
/// above [`GENERATED_MARK`], if `old` has it), the mark, then the generated
/// tables.
pub fn markdown_page(old: &str, tables: &[Table], machine: &str, command: &str) -> String {
    let mut page = match old.find(GENERATED_MARK) {
        Some(at) => old[..at].to_owned(),
        None => String::new(),
    };
    page.push_str(GENERATED_MARK);
    page.push_str("\n\n");
    page.push_str(&markdown(tables, machine, command));
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reading_above_the_mark_survives_regeneration() {
        let t = Table::new("B0", "t", "q");
        let first = markdown_page("", std::slice::from_ref(&t), "m1", "c");
        assert!(first.starts_with(GENERATED_MARK));
        let edited = format!("# Reading\n\nB0 is fine.\n\n{first}");
        let second = markdown_page(&edited, std::slice::from_ref(&t), "m2", "c");
        assert!(second.starts_with("# Reading\n\nB0 is fine.\n\n"));
        assert_eq!(second.matches(GENERATED_MARK).count(), 1);
        assert!(second.contains("m2") && !second.contains("m1"));
    }

    #[test]
    fn ratios_compare_with_the_cmwq_row_of_the_group() {
        let mut t = Table::new("BX", "test", "none");
        t.ratio_of = Some("x".into());
        t.rows.push(Row::new("cmwq a").group("g1").num("x", 2.0));
        t.rows.push(Row::new("peer").group("g1").num("x", 4.0));
        t.rows.push(Row::new("cmwq a").group("g2").num("x", 1.0));
        t.rows.push(Row::new("peer").group("g2").num("x", 3.0));
        t.compute_ratios();
        assert_eq!(t.rows[1].get(RATIO), Some(2.0));
        assert_eq!(t.rows[3].get(RATIO), Some(3.0));
        assert!(t.to_text().contains("2.00x"));
    }

    #[test]
    fn json_escapes_and_numbers() {
        assert_eq!(json_str("a\"b\n"), "\"a\\\"b\\n\"");
        let mut t = Table::new("B0", "t", "q");
        t.rows.push(
            Row::new("s")
                .num("a", 1.5)
                .num("b", f64::NAN)
                .text("m", "perf"),
        );
        let j = t.to_json();
        assert!(j.contains("\"a\":1.5,\"b\":null,\"m\":\"perf\""), "{j}");
    }

    #[test]
    fn medians_of_repetitions() {
        let r = [
            Row::new("s").num("a", 1.0).text("m", "x"),
            Row::new("s").num("a", 5.0).text("m", "y"),
            Row::new("s").num("a", 3.0).text("m", "z"),
        ];
        let m = median_row(&r);
        assert_eq!(m.get("a"), Some(3.0));
        assert_eq!(m.cells[1].1, Value::Text("x".into()));
    }

    #[test]
    fn number_format() {
        assert_eq!(fmt_num(1234567.8), "1234568");
        assert_eq!(fmt_num(12.3456), "12.35");
        assert_eq!(fmt_num(0.0123456), "0.01235");
        assert_eq!(fmt_num(3.0), "3");
    }
}
