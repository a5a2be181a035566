mod probes;
fn main() -> anyhow::Result<()> {
    let mut p = probes::Probes::load(&probes::ProbeOptions::default())?;
    println!("loaded; missing: {:?}", p.missing);
    p.trace(std::process::id(), true)?;
    let _f = std::fs::File::open("/etc/hostname")?;
    println!("{:?}", p.counters()?);
    Ok(())
}
