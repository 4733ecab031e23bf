//! `--output table|json` for every listing.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Prints rows (JSON objects with the same keys) as an aligned table or as a JSON array.
pub fn print_rows(format: Format, columns: &[&str], rows: &[Value]) {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(rows).unwrap_or_else(|_| "[]".into())),
        Format::Table => print!("{}", table(columns, rows)),
    }
}

pub fn table(columns: &[&str], rows: &[Value]) -> String {
    let cell = |row: &Value, column: &str| -> String {
        match row.get(column) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(text)) => text.clone(),
            Some(other) => other.to_string(),
        }
    };
    let mut widths: Vec<usize> = columns.iter().map(|c| c.len()).collect();
    for row in rows {
        for (i, column) in columns.iter().enumerate() {
            widths[i] = widths[i].max(cell(row, column).chars().count().min(80));
        }
    }
    let mut out = String::new();
    let line = |values: Vec<String>| -> String {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let v: String = v.chars().take(80).collect();
                format!("{v:<width$}", width = widths[i])
            })
            .collect::<Vec<_>>()
            .join(" | ")
            .trim_end()
            .to_string()
    };
    out.push_str(&line(columns.iter().map(|c| c.to_string()).collect()));
    out.push('\n');
    out.push_str(&widths.iter().map(|w| "=".repeat(*w)).collect::<Vec<_>>().join("=+="));
    out.push('\n');
    for row in rows {
        out.push_str(&line(columns.iter().map(|c| cell(row, c)).collect()));
        out.push('\n');
    }
    out
}
