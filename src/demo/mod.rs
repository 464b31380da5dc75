pub fn run(_port: u16) -> anyhow::Result<()> { todo!() }
