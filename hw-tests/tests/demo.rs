//! `make demo` is the README's first command: the demo scenario must pass.

#[test]
fn the_demo_passes() {
    let mut console = Vec::new();
    let report = vfnvme_hw_tests::demo::run(&mut console)
        .unwrap_or_else(|error| panic!("demo: cannot run: {error}"));
    if !report.passed() {
        report.outcome.fail(&report.summary_line());
    }
    let shown = String::from_utf8_lossy(&console);
    for expected in [
        "==> ",
        "  $ vfnvme identify",
        "QEMU NVMe Ctrl",
        "  $ nvme connect -t tcp",
        "vfnvme serve exited with status 0",
    ] {
        assert!(
            shown.contains(expected),
            "the demo's output lacks {expected:?}:\n{shown}"
        );
    }
}
