//! Plain-text tables and progress bars for the CLI.

/// A table: a header row and rows, columns padded to their widest cell.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row, no trailing spaces.
    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (index, cell) in row.iter().enumerate().take(columns) {
                widths[index] = widths[index].max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut text = String::new();
            for (index, width) in widths.iter().enumerate() {
                let cell = cells.get(index).map(String::as_str).unwrap_or("");
                text.push_str(cell);
                if index + 1 < columns {
                    let pad = width - cell.chars().count() + 2;
                    text.push_str(&" ".repeat(pad));
                }
            }
            text.trim_end().to_string()
        };
        let mut out = line(&self.header);
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row));
            out.push('\n');
        }
        out
    }
}

/// `[#########-----------]  45%` for a fraction between 0 and 1.
pub fn progress_bar(fraction: f64, width: usize) -> String {
    let fraction = fraction.clamp(0.0, 1.0);
    let filled = (fraction * width as f64).round() as usize;
    format!(
        "[{}{}] {:>3.0}%",
        "#".repeat(filled),
        "-".repeat(width - filled),
        fraction * 100.0
    )
}

/// A cell for an optional value: the value or `-`.
pub fn or_dash(value: Option<&str>) -> String {
    value.filter(|v| !v.is_empty()).unwrap_or("-").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let mut table = Table::new(&["NAME", "STATE"]);
        table.row(vec!["node-1".into(), "enrolled".into()]);
        table.row(vec!["n".into(), "done".into()]);
        assert_eq!(
            table.render(),
            "NAME    STATE\nnode-1  enrolled\nn       done\n"
        );
    }

    #[test]
    fn bars() {
        assert_eq!(progress_bar(0.5, 10), "[#####-----]  50%");
        assert_eq!(progress_bar(2.0, 4), "[####] 100%");
        assert_eq!(or_dash(None), "-");
    }
}
