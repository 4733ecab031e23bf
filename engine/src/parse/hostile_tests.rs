//! Hostile or careless DAG files: each is read within its budgets (size, nesting, time, errors kept), the
//! folder walk ends on symbolic link loops, checks stay linear in tasks and keys, and every invalid form is
//! refused with its line and reason instead of being read into something else.

use std::time::Duration;

use super::*;

fn one_error(parsed: &ParsedFile) -> String {
    assert!(parsed.dags.is_empty(), "no DAGs from a file over a budget");
    assert_eq!(parsed.errors.len(), 1, "{:#?}", parsed.errors);
    parsed.errors[0].message.clone()
}

fn file_with(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dag.yml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn a_file_over_the_size_limit_is_not_read() {
    let (dir, path) = file_with(&format!(
        "d:\n  description: {}\n  tasks: {{a: {{operator: empty}}}}\n",
        "x".repeat(2000)
    ));
    let limits = Limits {
        max_file_bytes: 1000,
        ..Default::default()
    };
    let parsed = parse_path(
        dir.path(),
        &path,
        &FolderOptions {
            limits,
            ..Default::default()
        },
        &OperatorRegistry::builtin(),
    );
    let message = one_error(&parsed);
    assert!(
        message.contains("larger than 1000 bytes") && message.contains("dag_file_max_bytes"),
        "{message}"
    );
    assert!(parse_path(
        dir.path(),
        &path,
        &FolderOptions::default(),
        &OperatorRegistry::builtin()
    )
    .errors
    .is_empty());
}

#[test]
fn nesting_past_the_limit_is_one_error_at_its_line() {
    let deep = format!("{}{}", "[".repeat(150), "]".repeat(150));
    let (dir, path) = file_with(&format!(
        "d:\n  params:\n    p: {deep}\n  tasks: {{a: {{operator: empty}}}}\n"
    ));
    let parsed = parse_path(
        dir.path(),
        &path,
        &FolderOptions::default(),
        &OperatorRegistry::builtin(),
    );
    let message = one_error(&parsed);
    assert!(message.contains("deeper than 100 levels"), "{message}");
    assert_eq!(parsed.errors[0].location.line, Some(3));
    let shallow = format!("{}{}", "[".repeat(50), "]".repeat(50));
    let (dir, path) = file_with(&format!(
        "d:\n  params:\n    p: {shallow}\n  tasks: {{a: {{operator: empty}}}}\n"
    ));
    let parsed = parse_path(
        dir.path(),
        &path,
        &FolderOptions::default(),
        &OperatorRegistry::builtin(),
    );
    assert!(parsed.errors.is_empty(), "{:#?}", parsed.errors);
}

#[test]
fn a_file_past_its_time_limit_is_one_error() {
    let mut text = String::from("d:\n  tasks:\n");
    for i in 0..50_000 {
        text.push_str(&format!("    t{i}: {{operator: empty}}\n"));
    }
    let (dir, path) = file_with(&text);
    let limits = Limits {
        import_timeout: Duration::from_nanos(1),
        ..Default::default()
    };
    let parsed = parse_path(
        dir.path(),
        &path,
        &FolderOptions {
            limits,
            ..Default::default()
        },
        &OperatorRegistry::builtin(),
    );
    let message = one_error(&parsed);
    assert!(message.contains("dagbag_import_timeout"), "{message}");
}

#[test]
fn errors_kept_per_file_are_bounded_and_the_rest_counted() {
    let mut text = String::from("d:\n  tasks:\n");
    for i in 0..1000 {
        text.push_str(&format!("    t{i}: {{operator: nope}}\n"));
    }
    let (dir, path) = file_with(&text);
    let parsed = parse_path(
        dir.path(),
        &path,
        &FolderOptions::default(),
        &OperatorRegistry::builtin(),
    );
    assert_eq!(parsed.errors.len(), 101);
    assert!(
        parsed.errors[100].message.contains("900 more errors"),
        "{}",
        parsed.errors[100].message
    );
}

#[test]
fn a_symbolic_link_loop_in_the_folder_is_walked_once() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("a.yml"), "a:\n  tasks: {t: {operator: empty}}\n").unwrap();
    std::os::unix::fs::symlink(dir.path(), sub.join("back_up")).unwrap();
    let files = load_folder(dir.path(), &FolderOptions::default(), &OperatorRegistry::builtin());
    let dags: Vec<&str> = files
        .iter()
        .flat_map(|f| f.dags.iter().map(|d| d.dag_id.as_str()))
        .collect();
    assert_eq!(dags, ["a"], "{files:#?}");
}

#[test]
fn many_tasks_and_keys_stay_linear() {
    // A chain of 100,000 tasks and 100,000 params: seconds, not minutes (a quadratic check would take
    // minutes here). Timing is not asserted; the test would time out.
    let mut text = String::from("d:\n  params:\n");
    for i in 0..100_000 {
        text.push_str(&format!("    p{i}: {i}\n"));
    }
    text.push_str("  tasks:\n");
    for i in 0..100_000 {
        if i == 0 {
            text.push_str("    t0: {operator: empty}\n");
        } else {
            text.push_str(&format!("    t{i}: {{operator: empty, dependencies: [t{}]}}\n", i - 1));
        }
    }
    let parsed = parse_text("big.yml", &text, &[], &OperatorRegistry::builtin());
    assert!(
        parsed.errors.is_empty(),
        "{:#?}",
        &parsed.errors[..parsed.errors.len().min(3)]
    );
    let dag = &parsed.dags[0];
    assert_eq!(dag.tasks.len(), 100_000);
    assert_eq!(dag.params.len(), 100_000);
    assert_eq!(dag.tasks[0].effective_priority, 100_000);
}

fn only_error(text: &str) -> DagFileError {
    let parsed = parse_text("dags/test.yml", text, &[], &OperatorRegistry::builtin());
    assert!(parsed.dags.is_empty(), "no DAG from:\n{text}");
    assert_eq!(parsed.errors.len(), 1, "{text}\n{:#?}", parsed.errors);
    parsed.errors[0].clone()
}

#[test]
fn invalid_forms_are_refused_with_their_line() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "d:\n  task_groups: {g: {}}\n  tasks:\n    a: {operator: empty, task_group_name: g, dependencies: [g]}\n",
            4,
            "is in task group `g` and cannot depend on it",
        ),
        (
            "d:\n  task_groups:\n    g: {dependencies: [g]}\n  tasks:\n    a: {operator: empty, task_group_name: g}\n",
            3,
            "depends on itself",
        ),
        (
            "d:\n  task_groups:\n    outer: {}\n    inner: {parent_group_name: outer, dependencies: [outer]}\n  tasks:\n    a: {operator: empty, task_group_name: inner}\n",
            4,
            "which contains it",
        ),
        (
            "d:\n  task_groups:\n    g: {parent_group_name: g}\n  tasks:\n    a: {operator: empty, task_group_name: g}\n",
            3,
            "is its own parent",
        ),
        (
            "d:\n  task_groups:\n    a: {parent_group_name: b}\n    b: {parent_group_name: a}\n  tasks:\n    t: {operator: empty, task_group_name: a}\n",
            3,
            "parents form a cycle",
        ),
        ("d:\n  task_groups:\n    ../x: {}\n  tasks: {a: {operator: empty}}\n", 3, "group id"),
        ("d:\n  start_date: -0001-01-01\n  tasks: {a: {operator: empty}}\n", 2, "years 1 to 9999"),
        ("d:\n  start_date: 2025-01-01\n  schedule: 0 0 31 2 *\n  tasks: {a: {operator: empty}}\n", 3, "never fires"),
        ("d:\n  schedule: ''\n  tasks: {a: {operator: empty}}\n", 2, "empty schedule"),
        ("d:\n  start_date: 2025-01-01\n  schedule: 1,2,3,,4 * * * *\n  tasks: {a: {operator: empty}}\n", 3, "cron"),
        ("d:\n  tags: [[1]]\n  tasks: {a: {operator: empty}}\n", 2, "a tag must be text"),
        ("d:\n  tasks:\n    a: {operator: empty, queue: [q]}\n", 3, "`queue` must be a string"),
    ];
    for (text, line, needle) in cases {
        let error = only_error(text);
        assert_eq!(error.location.line, Some(*line), "{text}\n{error:?}");
        assert!(
            error.message.contains(needle),
            "{text}\nexpected `{needle}` in: {}",
            error.message
        );
    }
    let long_tag = format!(
        "d:\n  tags: [{}]\n  tasks: {{a: {{operator: empty}}}}\n",
        "t".repeat(10_000)
    );
    assert!(only_error(&long_tag).message.contains("at most 100 characters"));
}

/// Seeds for the fuzz run (read once): the bundled example DAGs, and the bombs and oddities an attacker starts
/// from.
fn fuzz_seeds() -> &'static [String] {
    static SEEDS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(read_fuzz_seeds)
}

fn read_fuzz_seeds() -> Vec<String> {
    let mut seeds: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../dags"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    let mut laughs = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
    for level in 1..9u8 {
        let (prev, this) = ((b'a' + level - 1) as char, (b'a' + level) as char);
        laughs.push_str(&format!(
            "{this}: &{this} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        ));
    }
    seeds.push(laughs);
    seeds.push(format!(
        "d:\n  params: {}{}\n  tasks: {{a: {{operator: empty}}}}\n",
        "[".repeat(300),
        "]".repeat(300)
    ));
    seeds.push("d:\n  task_groups: {g: {parent_group_name: g, dependencies: [g]}}\n  tasks: {a: {operator: empty, task_group_name: g, dependencies: [g]}}\n".into());
    seeds.push("d:\n  schedule: '1,,2 * * * *'\n  start_date: -0001-01-01\n  tags: [[1], {a: b}]\n  tasks: {a: {operator: bash, bash_command: {__join__: [a, {__type__: datetime.timedelta, __args__: [1, 2, 3, 4, 5, 6, 7, 8]}]}}}\n".into());
    seeds.push("default: {tasks: {a: {operator: empty}}}\nd: {tasks: {b: {dependencies: [a, a, b]}}}\n".into());
    seeds
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 400, ..Default::default() })]

    /// Mutated DAG files (bytes replaced, inserted, cut, lines repeated) never panic the loader or the parser,
    /// and every one is read within its budget.
    #[test]
    fn mutated_files_never_panic_and_stay_within_budget(
        seed in 0usize..64,
        edits in proptest::collection::vec((0usize..100_000, 0u8..5, proptest::prelude::any::<u8>()), 1..12),
    ) {
        const ALPHABET: &[u8] = b" \n\t:-[]{},&*!|>'\"#%@`?<=.0123456789abcxyz_\\";
        let seeds = fuzz_seeds();
        let mut bytes = seeds[seed % seeds.len()].clone().into_bytes();
        for (at, op, pick) in edits {
            let at = if bytes.is_empty() { 0 } else { at % bytes.len() };
            let byte = ALPHABET[pick as usize % ALPHABET.len()];
            match op {
                0 if !bytes.is_empty() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                2 if !bytes.is_empty() => { bytes.remove(at); }
                3 => {
                    let end = bytes[at..].iter().position(|b| *b == b'\n').map(|p| at + p + 1).unwrap_or(bytes.len());
                    let line = bytes[at..end].to_vec();
                    for _ in 0..(pick % 4) { bytes.splice(at..at, line.iter().copied()); }
                }
                _ => bytes.truncate(at),
            }
        }
        let text = String::from_utf8_lossy(&bytes).to_string();
        let (dir, path) = file_with(&text);
        let started = std::time::Instant::now();
        let limits = Limits { import_timeout: Duration::from_secs(5), ..Default::default() };
        let parsed = parse_path(dir.path(), &path, &FolderOptions { limits, ..Default::default() }, &OperatorRegistry::builtin());
        proptest::prop_assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
        proptest::prop_assert!(parsed.errors.len() <= limits.max_errors + 1);
        for error in &parsed.errors {
            proptest::prop_assert!(!error.message.is_empty());
        }
    }
}
