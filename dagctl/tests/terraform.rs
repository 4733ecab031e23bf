//! The Terraform modules and the Terragrunt layout (`terraform/`): `tofu fmt -check` on every file (the
//! Terragrunt `.hcl` files through `.tf` copies, which tofu formats the same way), `tofu validate` of the module
//! that needs no provider (the helm, kubernetes and random providers cannot be had on these machines: the Go
//! module proxy serves none of their v2+ releases, see scripts/ensure-tofu.sh), and every unit's inputs checked
//! against its module's variables, outputs and pins by `terraform/check_inputs.py` (Terragrunt does not build
//! here), including its self-test, which breaks copies on purpose and checks each break is reported.
//! OpenTofu comes from `DAGCTL_TEST_TOFU` (scripts/test.sh builds it with scripts/ensure-tofu.sh).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn tofu() -> PathBuf {
    match std::env::var("DAGCTL_TEST_TOFU") {
        Ok(path) if Path::new(&path).is_file() => PathBuf::from(path),
        _ => panic!("DAGCTL_TEST_TOFU does not name tofu: scripts/test.sh builds it (scripts/ensure-tofu.sh)"),
    }
}

fn run_tofu(dir: &Path, args: &[&str]) -> Output {
    Command::new(tofu())
        .args(args)
        .current_dir(dir)
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_IN_AUTOMATION", "1")
        .env("TF_DATA_DIR", dir.join(".terraform"))
        .output()
        .expect("run tofu")
}

fn text(output: &Output) -> String {
    format!("{}{}", common::stdout(output), common::stderr(output))
}

fn copy_tree(from: &Path, to: &Path, rename: &dyn Fn(&Path) -> Option<PathBuf>) {
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            copy_tree(&path, &to.join(entry.file_name()), rename);
        } else if let Some(name) = rename(&path) {
            std::fs::create_dir_all(to).unwrap();
            std::fs::copy(&path, to.join(name)).unwrap();
        }
    }
}

#[test]
fn every_file_is_formatted_and_the_provider_free_module_validates() {
    let terraform = repo_root().join("terraform");
    let fmt = run_tofu(&terraform, &["fmt", "-check", "-recursive", "-diff", "."]);
    assert!(fmt.status.success(), "tofu fmt -check: {}", text(&fmt));

    // Terragrunt's files, as .tf copies (tofu fmt takes only .tf and .tfvars names).
    let copies = tempfile::tempdir().unwrap();
    copy_tree(&terraform.join("live"), copies.path(), &|path| {
        (path.extension().is_some_and(|e| e == "hcl"))
            .then(|| PathBuf::from(path.file_stem().unwrap()).with_extension("tf"))
    });
    let count = walk_count(copies.path());
    assert!(
        count > 28 + 4 + 2,
        "every unit, region, env and the root: {count} files"
    );
    let fmt = run_tofu(copies.path(), &["fmt", "-check", "-recursive", "-diff", "."]);
    assert!(
        fmt.status.success(),
        "tofu fmt -check on the Terragrunt files: {}",
        text(&fmt)
    );

    // A copy, so `.terraform` and the lock file never land in the repository.
    let module = tempfile::tempdir().unwrap();
    copy_tree(&terraform.join("modules/oidc"), module.path(), &|path| {
        path.file_name().map(PathBuf::from)
    });
    let init = run_tofu(module.path(), &["init", "-backend=false", "-input=false", "-no-color"]);
    assert!(init.status.success(), "tofu init: {}", text(&init));
    let validate = run_tofu(module.path(), &["validate", "-no-color"]);
    assert!(validate.status.success(), "tofu validate: {}", text(&validate));

    // fmt can fail: a misformatted file is reported.
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(broken.path().join("main.tf"), "variable \"x\" {\ntype=string\n}\n").unwrap();
    let fmt = run_tofu(broken.path(), &["fmt", "-check", "."]);
    assert!(!fmt.status.success(), "{}", text(&fmt));
}

fn walk_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| if e.path().is_dir() { walk_count(&e.path()) } else { 1 })
        .sum()
}

#[test]
fn every_terragrunt_unit_gives_its_module_what_it_needs_and_pins_every_version() {
    let script = repo_root().join("terraform/check_inputs.py");
    let checked = Command::new(common::python()).arg(&script).output().unwrap();
    assert!(checked.status.success(), "{}", text(&checked));
    assert!(common::stdout(&checked).contains("OK: 28 units"), "{}", text(&checked));
    let selftest = Command::new(common::python())
        .arg(&script)
        .arg("--self-test")
        .output()
        .unwrap();
    assert!(selftest.status.success(), "{}", text(&selftest));
    assert!(common::stdout(&selftest).contains(" 0 failed"), "{}", text(&selftest));
}
