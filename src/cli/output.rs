//! How client commands print: `--output table` (default) or `--output json` (`-o json`,
//! `ARBITER_OUTPUT`), and tables whose columns fit their longest cell.

use clap::Args;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// The JSON the API answered (errors too), for scripts.
    Json,
}

#[derive(Args, Debug, Clone, Default)]
pub struct OutputArgs {
    /// Output format.
    #[arg(
        long,
        short = 'o',
        value_enum,
        env = "ARBITER_OUTPUT",
        default_value_t = Format::Table,
        global = true
    )]
    pub output: Format,
    /// Same as `--output json`.
    #[arg(long, hide = true, global = true)]
    pub json: bool,
}

impl OutputArgs {
    pub fn is_json(&self) -> bool {
        self.json || self.output == Format::Json
    }

    /// Prints a command's result: `text` for people, or `json` with `--output json`.
    pub fn result(&self, text: impl std::fmt::Display, json: serde_json::Value) {
        if self.is_json() {
            println!(
                "{}",
                serde_json::to_string_pretty(&json).unwrap_or_else(|_| json.to_string())
            );
        } else {
            println!("{text}");
        }
    }
}

/// A table: each column as wide as its widest cell, so long names never shift the columns
/// after them. Cells are single-line: control characters become spaces.
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| one_line(c)).collect());
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = cells.get(i).map(String::as_str).unwrap_or("");
                out.push_str(cell);
                if i + 1 < columns {
                    let pad = width - cell.chars().count() + 2;
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.trim_end().to_string()
        };
        let mut out = line(&self.headers);
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row));
            out.push('\n');
        }
        out
    }

    pub fn print(&self) {
        print!("{}", self.render());
    }
}

fn one_line(cell: &str) -> String {
    cell.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_cells_widen_their_column_and_keep_the_others_aligned() {
        let mut table = Table::new(&["NAME", "STATE", "N"]);
        table.push(vec!["a".into(), "HELD".into(), "1".into()]);
        let long = "tenant-with-a-really-quite-long-name-é".to_string();
        table.push(vec![long.clone(), "DRAINING".into(), "22".into()]);
        table.push(vec!["line\nbreak".into(), "x".into(), "3".into()]);
        let rendered = table.render();
        let lines: Vec<&str> = rendered.lines().collect();
        assert_eq!(lines.len(), 4, "{rendered}");
        // The STATE column starts at the same character position on every line.
        let start = long.chars().count() + 2;
        for line in &lines {
            let state: String = line.chars().skip(start).take(4).collect();
            assert!(!state.starts_with(' '), "misaligned: {line:?}\n{rendered}");
        }
        assert!(lines[3].starts_with("line break"), "{rendered}");
    }
}
