//! `.airflowignore`, as Airflow reads it when it walks the DAGs folder: each file's patterns apply to its own
//! folder and every folder below it, added to those of the folders above; a matching folder is not entered.
//! Everything from `#` to the end of a line is a comment.
//!
//! Two syntaxes, as Airflow's `[core] dag_ignore_file_syntax`: `glob` (Airflow 3's default): gitignore's
//! wildmatch, where a pattern with a `/` at its start or middle is relative to the `.airflowignore`'s folder and
//! any other pattern matches a file or folder name at any depth, a trailing `/` matches folders only, and a
//! later `!pattern` takes a path back; `regexp` (Airflow 2's default): a path is ignored when a pattern is
//! found anywhere in its path relative to the DAGs folder. Regular expressions use Rust's syntax, which has no
//! look-around or back-references: such a pattern, like any pattern that does not compile, is skipped with a
//! warning, as Airflow skips an invalid one.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use regex::Regex;

/// The name of the ignore file.
pub const IGNORE_FILE: &str = ".airflowignore";

/// How `.airflowignore` patterns are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IgnoreSyntax {
    #[default]
    Glob,
    Regexp,
}

impl FromStr for IgnoreSyntax {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "glob" => Ok(IgnoreSyntax::Glob),
            "regexp" => Ok(IgnoreSyntax::Regexp),
            other => Err(format!(
                "unknown .airflowignore syntax `{other}`; expected glob or regexp"
            )),
        }
    }
}

#[derive(Debug, Clone)]
enum Rule {
    Regexp {
        pattern: Regex,
    },
    Glob {
        pattern: Regex,
        /// `false` for a `!pattern`.
        ignore: bool,
        /// The folder an anchored pattern is relative to; `None` matches the name alone.
        relative_to: Option<PathBuf>,
    },
}

/// The patterns in force in one folder.
#[derive(Debug, Clone, Default)]
pub(super) struct IgnoreRules {
    syntax: IgnoreSyntax,
    rules: Vec<Rule>,
}

impl IgnoreRules {
    pub(super) fn new(syntax: IgnoreSyntax) -> Self {
        IgnoreRules {
            syntax,
            rules: Vec::new(),
        }
    }

    /// The rules for `dir`: these plus its own `.airflowignore`, if it has one, and warnings about patterns
    /// that were skipped (with the line they are on).
    pub(super) fn enter(&self, dir: &Path) -> (IgnoreRules, Vec<(usize, String)>) {
        let mut rules = self.clone();
        let mut warnings = Vec::new();
        let Ok(text) = std::fs::read_to_string(dir.join(IGNORE_FILE)) else {
            return (rules, warnings);
        };
        for (index, line) in text.split('\n').enumerate() {
            let pattern = match line.find('#') {
                Some(comment) => line[..comment].trim_end(),
                None => line,
            };
            let pattern = pattern.trim_end_matches(['\r']);
            if pattern.is_empty() {
                continue;
            }
            match rules.syntax {
                IgnoreSyntax::Regexp => match Regex::new(pattern) {
                    Ok(pattern) => rules.rules.push(Rule::Regexp { pattern }),
                    Err(err) => warnings.push((
                        index + 1,
                        format!(
                            "ignoring pattern `{pattern}`: not a regular expression dagctl reads ({})",
                            one_line(&err.to_string())
                        ),
                    )),
                },
                IgnoreSyntax::Glob => match glob_rule(pattern, dir) {
                    Ok(Some(rule)) => rules.rules.push(rule),
                    Ok(None) => {}
                    Err(why) => warnings.push((index + 1, format!("ignoring pattern `{pattern}`: {why}"))),
                },
            }
        }
        (rules, warnings)
    }

    /// Whether `path` (a file, or a folder when `is_dir`) is ignored; `root` is the DAGs folder.
    pub(super) fn ignores(&self, root: &Path, path: &Path, is_dir: bool) -> bool {
        let mut ignored = false;
        for rule in &self.rules {
            match rule {
                Rule::Regexp { pattern } => {
                    let relative = path.strip_prefix(root).unwrap_or(path);
                    if pattern.is_match(&relative.to_string_lossy()) {
                        return true;
                    }
                }
                Rule::Glob {
                    pattern,
                    ignore,
                    relative_to,
                } => {
                    let mut relative = match relative_to {
                        Some(base) => match path.strip_prefix(base) {
                            Ok(rest) => rest.to_string_lossy().to_string(),
                            Err(_) => continue,
                        },
                        None => path
                            .file_name()
                            .map(|name| name.to_string_lossy().to_string())
                            .unwrap_or_default(),
                    };
                    if is_dir {
                        relative.push('/');
                    }
                    if pattern.is_match(&relative) {
                        ignored = *ignore;
                    }
                }
            }
        }
        ignored
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A gitignore wildmatch pattern as Airflow's glob rule reads it; `Ok(None)` for a line that matches nothing.
fn glob_rule(line: &str, dir: &Path) -> Result<Option<Rule>, String> {
    let mut pattern = trim_unescaped_spaces(line);
    if pattern.trim() == "/" || pattern.is_empty() {
        return Ok(None);
    }
    let mut ignore = true;
    if let Some(rest) = pattern.strip_prefix('!') {
        ignore = false;
        pattern = rest;
    } else if pattern.starts_with("\\!") || pattern.starts_with("\\#") {
        pattern = &pattern[1..];
    }
    if pattern.is_empty() {
        return Ok(None);
    }
    let anchored = pattern.starts_with('/') || pattern.trim_end_matches('/').contains('/');
    let regex = wildmatch_regex(pattern, anchored);
    let pattern = Regex::new(&regex).map_err(|err| one_line(&err.to_string()))?;
    Ok(Some(Rule::Glob {
        pattern,
        ignore,
        relative_to: anchored.then(|| dir.to_path_buf()),
    }))
}

/// Trailing spaces end a pattern unless escaped with a backslash.
fn trim_unescaped_spaces(line: &str) -> &str {
    let mut end = line.len();
    while end > 0 && line.as_bytes()[end - 1] == b' ' {
        if end >= 2 && line.as_bytes()[end - 2] == b'\\' {
            break;
        }
        end -= 1;
    }
    &line[..end]
}

/// The regular expression of a wildmatch pattern over `/`-separated relative paths, folders ending in `/`;
/// an `anchored` pattern matches from the start, any other at any depth.
fn wildmatch_regex(pattern: &str, anchored: bool) -> String {
    let folder_only = pattern.ends_with('/');
    let body = pattern.strip_prefix('/').unwrap_or(pattern);
    let body = body.trim_end_matches('/');
    let segments: Vec<&str> = body.split('/').collect();
    let mut regex = String::from("^");
    if !anchored {
        regex.push_str("(?:.*/)?");
    }
    for (index, segment) in segments.iter().enumerate() {
        let last = index + 1 == segments.len();
        if *segment == "**" {
            regex.push_str(if last { ".*" } else { "(?:.*/)?" });
            continue;
        }
        regex.push_str(&segment_regex(segment));
        if !last {
            regex.push('/');
        }
    }
    if folder_only {
        regex.push_str("/.*");
    } else if segments.last() != Some(&"**") {
        // A pattern that names a folder covers everything in it.
        regex.push_str("(?:/.*)?");
    }
    regex.push('$');
    regex
}

/// One path segment: `*` and `?` stay within the segment, `[...]` is a class (`[!...]` negated), `\x` is `x`.
fn segment_regex(segment: &str) -> String {
    let chars: Vec<char> = segment.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => {
                while i + 1 < chars.len() && chars[i + 1] == '*' {
                    i += 1;
                }
                out.push_str("[^/]*");
            }
            '?' => out.push_str("[^/]"),
            '\\' if i + 1 < chars.len() => {
                i += 1;
                out.push_str(&regex::escape(&chars[i].to_string()));
            }
            '[' => match chars[i + 1..].iter().position(|c| *c == ']').map(|p| p + i + 1) {
                // `]` right after `[` (or `[!`) is a member, not the end.
                Some(close) => {
                    let mut start = i + 1;
                    let mut class = String::from("[");
                    if matches!(chars.get(start), Some('!' | '^')) {
                        class.push('^');
                        start += 1;
                    }
                    let mut end = close;
                    if end == start {
                        match chars[start + 1..].iter().position(|c| *c == ']') {
                            Some(p) => end = start + 1 + p,
                            None => {
                                out.push_str("\\[");
                                i += 1;
                                continue;
                            }
                        }
                    }
                    for &c in &chars[start..end] {
                        if matches!(c, '\\' | '[' | ']' | '&' | '~' | '^') {
                            class.push('\\');
                        }
                        class.push(c);
                    }
                    class.push(']');
                    out.push_str(&class);
                    i = end;
                }
                None => out.push_str("\\["),
            },
            c => out.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(syntax: IgnoreSyntax, text: &str) -> (tempfile::TempDir, IgnoreRules) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(IGNORE_FILE), text).unwrap();
        let (rules, warnings) = IgnoreRules::new(syntax).enter(dir.path());
        assert!(warnings.is_empty(), "{warnings:?}");
        (dir, rules)
    }

    #[test]
    fn glob_patterns_as_gitignore() {
        let (dir, rules) = rules(
            IgnoreSyntax::Glob,
            "# comment\n*_draft.yml   # trailing comment\nold/\n/top.yml\nsub/exact.yml\n**/deep/*.yml\ntmp*\n!tmp_keep.yml\n[ab]?.yml\n",
        );
        let root = dir.path();
        let check = |rel: &str, is_dir: bool| rules.ignores(root, &root.join(rel), is_dir);
        assert!(check("x_draft.yml", false));
        assert!(check("a/b/x_draft.yml", false), "unanchored: any depth");
        assert!(check("old", true));
        assert!(check("a/old", true));
        assert!(!check("old", false), "`old/` matches folders only");
        assert!(check("top.yml", false));
        assert!(
            !check("a/top.yml", false),
            "`/top.yml` is anchored to the folder of the file"
        );
        assert!(check("sub/exact.yml", false));
        assert!(!check("a/sub/exact.yml", false), "a middle `/` anchors too");
        assert!(check("x/deep/y.yml", false));
        assert!(check("deep/y.yml", false));
        assert!(!check("deep/y.yaml", false));
        assert!(check("tmp_dag.yml", false));
        assert!(!check("tmp_keep.yml", false), "a later `!` takes it back");
        assert!(check("a1.yml", false));
        assert!(!check("c1.yml", false));
        assert!(!check("dag.yml", false));
    }

    #[test]
    fn regexp_patterns_search_the_path_from_the_root() {
        let (dir, rules) = rules(IgnoreSyntax::Regexp, "project_a\ntenant_[\\d]\n^sub/.*\\.yaml$\n");
        let root = dir.path();
        let check = |rel: &str| rules.ignores(root, &root.join(rel), false);
        assert!(check("project_a_dag_1.yml"));
        assert!(check("TESTING_project_a.yml"));
        assert!(check("tenant_1.yml"));
        assert!(check("tenant_1/dag_1.yml"));
        assert!(check("sub/x.yaml"));
        assert!(!check("sub/x.yml"));
        assert!(!check("other.yml"));
    }

    #[test]
    fn invalid_patterns_are_skipped_with_a_warning_and_their_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(IGNORE_FILE), "ok\n(?<=a)b\n").unwrap();
        let (rules, warnings) = IgnoreRules::new(IgnoreSyntax::Regexp).enter(dir.path());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].0, 2);
        assert!(rules.ignores(dir.path(), &dir.path().join("ok.yml"), false));
        assert_eq!("glob".parse::<IgnoreSyntax>(), Ok(IgnoreSyntax::Glob));
        assert!("fnmatch"
            .parse::<IgnoreSyntax>()
            .unwrap_err()
            .contains("glob or regexp"));
    }
}
