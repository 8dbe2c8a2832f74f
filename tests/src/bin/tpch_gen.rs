//! Writes TPC-H tables as parquet with `tpchgen-arrow`:
//! `tpch_gen <dir> <scale>` creates `<dir>/<table>/part-0.parquet` for
//! lineitem, orders, customer and nation, and prints the `CREATE EXTERNAL
//! TABLE` statements for them.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: tpch_gen <dir> <scale>")?;
    let scale: f64 = args
        .next()
        .ok_or("usage: tpch_gen <dir> <scale>")?
        .parse()?;
    use dftrace_tests::tpch::Table;
    let tables = [
        Table::Lineitem,
        Table::Orders,
        Table::Customer,
        Table::Nation,
    ];
    for create in dftrace_tests::tpch::write_tables(std::path::Path::new(&dir), scale, &tables) {
        println!("{create};");
    }
    Ok(())
}
