//! PyYAML ignores indentation inside `[...]` and `{...}`; yaml-rust2 does not. This rewrites such a text so
//! that yaml-rust2 reads it as PyYAML does (a change of columns only).

/// The text with every line that starts inside a flow collection (`[...]`, `{...}`) indented by one more
/// space than the line that opened it, or None when there is no such line. Quotes, comments and block
/// scalars are skipped; whitespace at the start of a line inside a flow collection carries no content.
pub(super) fn indent_flow_lines(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len() + 64);
    let mut depth = 0usize;
    let mut opener_indent = 0usize;
    let mut quote: Option<char> = None;
    let mut block_indent: Option<usize> = None;
    let mut changed = false;
    for line in text.split_inclusive('\n') {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let content = line.trim_end_matches(['\n', '\r']);
        if let Some(parent) = block_indent {
            if content.trim().is_empty() || indent > parent {
                out.push_str(line);
                continue;
            }
            block_indent = None;
        }
        if (depth > 0 || quote.is_some()) && indent <= opener_indent && !content.trim().is_empty() {
            out.push_str(&" ".repeat(opener_indent + 1 - indent));
            changed = true;
        }
        out.push_str(line);
        let chars: Vec<char> = content.chars().collect();
        let mut i = 0;
        let mut last_significant = ' ';
        while i < chars.len() {
            let c = chars[i];
            match quote {
                Some('\'') => {
                    if c == '\'' {
                        if chars.get(i + 1) == Some(&'\'') {
                            i += 1;
                        } else {
                            quote = None;
                        }
                    }
                }
                Some(_) => {
                    if c == '\\' {
                        i += 1;
                    } else if c == '"' {
                        quote = None;
                    }
                }
                None => {
                    let after_space = i == 0 || chars[i - 1] == ' ' || chars[i - 1] == '\t';
                    match c {
                        '#' if after_space => break,
                        '\'' | '"' if after_space || matches!(last_significant, '[' | '{' | ',' | ':') => {
                            quote = Some(c)
                        }
                        '[' | '{' if depth > 0 || after_space || matches!(last_significant, ':' | '-') => {
                            if depth == 0 {
                                opener_indent = indent;
                            }
                            depth += 1;
                        }
                        ']' | '}' if depth > 0 => depth -= 1,
                        '|' | '>' if depth == 0 && after_space && matches!(last_significant, ':' | '-' | ' ') => {
                            let rest: String = chars[i + 1..].iter().collect();
                            let rest = rest.split(" #").next().unwrap_or("").trim();
                            if rest.chars().all(|r| r.is_ascii_digit() || r == '-' || r == '+') {
                                block_indent = Some(indent);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            }
            if !c.is_whitespace() {
                last_significant = c;
            }
            i += 1;
        }
    }
    changed.then_some(out)
}
