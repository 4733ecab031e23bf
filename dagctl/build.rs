//! The lean task runner is linked at a fixed address (not position-independent): at each start the dynamic
//! loader then writes no relative relocations, which halves its page faults and saves about half a
//! millisecond per try (docs/benchmarks.md). It is a short-lived client process; `dagctl` itself, which
//! serves the web face, stays position-independent.

fn main() {
    println!("cargo:rustc-link-arg-bin=dagctl-runner=-no-pie");
}
