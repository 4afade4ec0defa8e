//! Aligned text tables for terminals: a header row, columns padded to their widest cell.

/// How a column's cells line up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    /// For numbers, so digits of the same weight line up.
    Right,
}

/// A table of text cells. Every row has as many cells as the header.
#[derive(Debug)]
pub(crate) struct Table {
    header: Vec<String>,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
}

/// Spaces between two columns.
const GAP: usize = 2;

impl Table {
    /// A table with these column titles, every column left-aligned.
    pub(crate) fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            align: vec![Align::Left; header.len()],
            rows: Vec::new(),
        }
    }

    /// Sets how column `column` lines up.
    pub(crate) fn align(mut self, column: usize, align: Align) -> Self {
        self.align[column] = align;
        self
    }

    /// Appends a row; missing cells are empty, extra cells are a bug.
    pub(crate) fn push(&mut self, mut row: Vec<String>) {
        debug_assert!(row.len() <= self.header.len(), "more cells than columns");
        row.resize(self.header.len(), String::new());
        self.rows.push(row);
    }

    /// The table as lines of text, each ending in a newline, without trailing spaces.
    pub(crate) fn render(&self) -> String {
        // Widths count characters, not bytes: `µs` and `×` are one column each.
        let width = |s: &str| s.chars().count();
        let widths: Vec<usize> = (0..self.header.len())
            .map(|c| {
                std::iter::once(&self.header)
                    .chain(&self.rows)
                    .map(|row| width(&row[c]))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c > 0 {
                    line.push_str(&" ".repeat(GAP));
                }
                let pad = " ".repeat(widths[c] - width(cell));
                match self.align[c] {
                    Align::Left => {
                        line.push_str(cell);
                        line.push_str(&pad);
                    }
                    Align::Right => {
                        line.push_str(&pad);
                        line.push_str(cell);
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_to_their_widest_cell() {
        let mut t = Table::new(&["NAME", "INTERFACE"]);
        t.push(vec!["counter".into(), "app::Counter".into()]);
        t.push(vec!["x".into(), "oxrmi.Registry".into()]);
        assert_eq!(
            t.render(),
            "NAME     INTERFACE\n\
             counter  app::Counter\n\
             x        oxrmi.Registry\n"
        );
    }

    #[test]
    fn right_aligned_columns_count_characters_not_bytes() {
        let mut t = Table::new(&["METRIC", "OURS", "NOTE"]).align(1, Align::Right);
        t.push(vec!["p50".into(), "12.5 µs".into(), String::new()]);
        t.push(vec!["rate".into(), "1,000/s".into(), "x".into()]);
        assert_eq!(
            t.render(),
            "METRIC     OURS  NOTE\n\
             p50     12.5 µs\n\
             rate    1,000/s  x\n"
        );
    }

    #[test]
    fn an_empty_table_is_its_header() {
        assert_eq!(
            Table::new(&["NAME", "INTERFACE"]).render(),
            "NAME  INTERFACE\n"
        );
    }
}
