//! Our YAML reader against PyYAML (what dag-factory reads DAG files with): every example DAG of this project,
//! hand-written tricky cases and a few hundred generated documents are read by both; the trees must be equal,
//! or both must refuse the text. PyYAML comes from the test venv (`DAGCTL_PYTHON`).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use engine::yaml::{Node, Value};
use serde_json::{json, Value as Json};

/// Reads each text of a JSON list with PyYAML's SafeLoader; answers a JSON list of `{"ok": [docs]}` or
/// `{"error": message}`. Dates become `{"$timestamp": iso}`, non-finite floats `{"$float": "inf"}`, mapping
/// keys text as our reader gives them.
const PYYAML: &str = r#"
import json, math, sys, datetime, yaml
def key(k):
    if k is True: return "true"
    if k is False: return "false"
    if k is None: return "null"
    if isinstance(k, float): return repr(k)
    return str(k)
def conv(v):
    if isinstance(v, bool) or v is None or isinstance(v, str): return v
    if isinstance(v, int): return v if -2**63 <= v < 2**63 else {"$bigint": str(v)}
    if isinstance(v, float):
        if math.isnan(v): return {"$float": "nan"}
        if math.isinf(v): return {"$float": "inf" if v > 0 else "-inf"}
        return v
    if isinstance(v, (datetime.date, datetime.datetime)): return {"$timestamp": v.isoformat()}
    if isinstance(v, list): return [conv(x) for x in v]
    if isinstance(v, dict): return {key(k): conv(x) for k, x in v.items()}
    return {"$other": repr(v)}
out = []
for text in json.load(sys.stdin):
    try:
        out.append({"ok": [conv(d) for d in yaml.safe_load_all(text)]})
    except Exception as e:
        out.append({"error": str(e).splitlines()[0] if str(e) else type(e).__name__})
print(json.dumps(out))
"#;

fn pyyaml(texts: &[String]) -> Vec<Json> {
    let mut child = Command::new(common::python())
        .args(["-c", PYYAML])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the venv's python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(texts).unwrap().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "PyYAML failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice::<Vec<Json>>(&output.stdout).unwrap()
}

/// Our tree in PyYAML's terms (see [`PYYAML`]).
fn ours(node: &Node) -> Json {
    match &node.value {
        Value::Null => Json::Null,
        Value::Bool(b) => json!(b),
        Value::Int(n) => json!(n),
        Value::Float(f) if f.is_nan() => json!({"$float": "nan"}),
        Value::Float(f) if f.is_infinite() => json!({"$float": if *f > 0.0 { "inf" } else { "-inf" }}),
        Value::Float(f) => json!(f),
        Value::Str(text) => json!(text),
        Value::Seq(items) => Json::Array(items.iter().map(ours).collect()),
        Value::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| (k.key_text().unwrap_or_default(), ours(v)))
                .collect(),
        ),
    }
}

/// Equal, where PyYAML's dates are the strings we keep (`2024-11-11`, `2024-11-11 10:00:00`).
fn same(theirs: &Json, ours: &Json) -> bool {
    match (theirs, ours) {
        (Json::Object(t), Json::String(o)) if t.contains_key("$timestamp") => {
            let iso = t["$timestamp"].as_str().unwrap_or("");
            o.len() >= 10 && iso.len() >= 10 && o[..10] == iso[..10]
        }
        (Json::Number(t), Json::Number(o)) => t.as_f64() == o.as_f64(),
        (Json::Array(t), Json::Array(o)) => t.len() == o.len() && t.iter().zip(o).all(|(t, o)| same(t, o)),
        (Json::Object(t), Json::Object(o)) => {
            t.len() == o.len() && t.iter().all(|(k, v)| o.get(k).is_some_and(|ov| same(v, ov)))
        }
        _ => theirs == ours,
    }
}

/// Scalars whose meaning differs between YAML 1.1 and 1.2, or that are easy to get wrong.
const ATOMS: &[&str] = &[
    "yes",
    "No",
    "ON",
    "off",
    "y",
    "n",
    "true",
    "False",
    "~",
    "null",
    "0777",
    "0o17",
    "0b11",
    "0x1f",
    "1_000",
    "1:30",
    "1:30.5",
    "1e3",
    "1.0e+3",
    "1.0e3",
    "1.5",
    ".5",
    "1.",
    "-.inf",
    ".NaN",
    "2024-11-11",
    "08",
    "+12",
    "-0",
    "0.0",
    "12abc",
    "a b",
    "'quoted: yes'",
    "\"dq \\\" yes\"",
    "echo {{ params.x }}",
    "''",
    "x#y",
    "-1:59",
    "0x_FF",
    "1__0",
    "v1.2.3",
    "2 days",
    "1_0.5_0",
    "060:30",
];

/// A small xorshift generator: the same documents on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn generated(rng: &mut Rng, depth: usize, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let atom = |rng: &mut Rng| {
        let a = ATOMS[rng.next(ATOMS.len())];
        // `{{` starts a flow mapping: a template must be quoted, as in a real DAG file.
        if a.contains("{{") {
            format!("\"{a}\"")
        } else {
            a.to_string()
        }
    };
    match (depth, rng.next(4)) {
        (0, _) | (_, 0) => atom(rng),
        (_, 1) => {
            let items: Vec<String> = (0..1 + rng.next(3)).map(|_| atom(rng)).collect();
            format!("[{}]", items.join(", "))
        }
        (_, 2) => {
            let mut text = String::new();
            for i in 0..1 + rng.next(3) {
                text.push_str(&format!("\n{pad}k{i}: {}", generated(rng, depth - 1, indent + 2)));
            }
            text
        }
        _ => {
            let mut text = String::new();
            for _ in 0..1 + rng.next(3) {
                text.push_str(&format!("\n{pad}- {}", generated(rng, 0, indent + 2)));
            }
            text
        }
    }
}

#[test]
fn our_reader_and_pyyaml_read_the_same_trees() {
    let mut texts: Vec<String> = Vec::new();
    let dags = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dags");
    let mut files: Vec<_> = std::fs::read_dir(&dags)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "the example DAGs: {files:?}");
    for file in &files {
        texts.push(std::fs::read_to_string(file).unwrap());
    }
    let hand: &[&str] = &[
        "d:\n  tasks:\n    t:\n      dependencies: [\n        a,\n        b\n      ]\n",
        "t:\n  dependencies: [\n  a,\n  b\n  ]\n",
        "t:\n  dependencies: [\n    a,\n    b\n]\n",
        "t:\n  dependencies: [\n a, 'b ]',\n b # ]\n ]\n  after: 1\n",
        "t:\n  d: {\n  k: v,\n  l: [1,\n  2]\n  }\n",
        "t:\n  cmd: |\n    echo [\n  deps: [\n  a\n  ]\n",
        "d:\n  default_args: &defaults\n    owner: me\n    retries: 2\n  other:\n    <<: *defaults\n    retries: 3\n",
        "a: [*x]\n",
        "a: &x 1\nb: *x\n---\nc: 2\n",
        "a: 1\na: 2\n",
        "a: |\n  line [\n  two\nb: >-\n  folded\n  text\n",
        "a: 'it''s'\nb: \"tab\\tnew\\nline\"\n",
        "catchup: no\nis_paused_upon_creation: yes\nretries: 0777\n",
        "a: {b: [1, {c: d}], e: }\n",
        "- a\n- b: c\n  d: e\n",
        "a:\n  - b\n   - c\n",
        "a: [1, 2\n",
        "a: b: c\n",
        "key: value # comment\n# only a comment\n",
        "? complex\n: value\n",
        "a: !!str 123\nb: !!int '7'\nc: !!float 1\nd: !!bool 'yes'\ne: !!null x\n",
        "a: !!int abc\n",
        "a: !custom 1\n",
        "a: !!python/name:os.system\n",
        "{a: 1, b: [x, y]}\n",
        "a:\n  b:\n    c: {\n      d: 1,\n      e: [2, 3]\n    }\n",
        "",
        "---\n...\n",
    ];
    texts.extend(hand.iter().map(|t| t.to_string()));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..300 {
        texts.push(format!("doc:{}\n", generated(&mut rng, 3, 2)));
    }
    let theirs = pyyaml(&texts);
    assert_eq!(theirs.len(), texts.len());
    let mut differences = Vec::new();
    for (text, theirs) in texts.iter().zip(&theirs) {
        let mine = engine::yaml::parse_str(text);
        match (theirs.get("ok"), &mine) {
            (Some(Json::Array(docs)), Ok(nodes)) => {
                // PyYAML yields a document for an empty `---`; we skip null documents the same way.
                let mine: Vec<Json> = nodes.iter().map(ours).collect();
                let docs: Vec<Json> = docs.clone();
                if !same(&Json::Array(docs.clone()), &Json::Array(mine.clone())) {
                    differences.push(format!(
                        "{text:?}\n  PyYAML: {}\n  ours:   {}",
                        json!(docs),
                        json!(mine)
                    ));
                }
            }
            (None, Err(_)) => {}
            (Some(docs), Err(err)) => differences.push(format!(
                "{text:?}\n  PyYAML: {docs}\n  ours: error line {}: {}",
                err.line, err.message
            )),
            (_, Ok(nodes)) => differences.push(format!(
                "{text:?}\n  PyYAML: {}\n  ours:   {}",
                theirs["error"],
                json!(nodes.iter().map(ours).collect::<Vec<_>>())
            )),
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} texts read differently:\n{}",
        differences.len(),
        texts.len(),
        differences.join("\n")
    );
}
