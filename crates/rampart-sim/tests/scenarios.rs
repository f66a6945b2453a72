//! Every shipped scenario passes with its default seed.

fn run_builtin(name: &str) -> rampart_sim::Report {
    let (sc, dir) = rampart_sim::load(name).expect("scenario loads");
    let report = rampart_sim::run(&sc, dir.as_deref(), None).expect("scenario runs");
    let text = report.render();
    assert!(report.passed(), "{name} failed:\n{text}");
    if std::env::var_os("SIM_PRINT").is_some() {
        println!("{text}");
    }
    report
}

#[test]
fn site_to_site() {
    run_builtin("site-to-site");
}

#[test]
fn rekey_under_load() {
    run_builtin("rekey-under-load");
}

#[test]
fn dead_peer() {
    run_builtin("dead-peer");
}

#[test]
fn lossy_wan() {
    run_builtin("lossy-wan");
}

#[test]
fn showcase() {
    run_builtin("showcase");
}
