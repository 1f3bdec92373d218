use std::collections::HashMap;
use std::time::Instant;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::tract_core::optim::Optimizer;
fn ms(t: &mut Instant) -> String {
    let s = format!("{:5.1}", t.elapsed().as_secs_f64() * 1e3);
    *t = Instant::now();
    s
}
fn main() -> anyhow::Result<()> {
    for _ in 0..4 {
        let mut t = Instant::now();
        let bytes = std::fs::read("models/notes/notes_int8.onnx")?;
        let read = ms(&mut t);
        let m = tract_onnx::onnx().model_for_read(&mut std::io::Cursor::new(&bytes))?;
        let parse = ms(&mut t);
        let concrete = std::env::var("CONCRETE").is_ok();
        let (mut m, typed, sym) = if concrete {
            let m = m.with_input_fact(
                0,
                InferenceFact::dt_shape(i64::datum_type(), tvec!(1, 1, 13)),
            )?;
            let m = m.into_typed()?;
            let typed = ms(&mut t);
            (m, typed, String::from("-"))
        } else {
            let m = m.into_typed()?;
            let typed = ms(&mut t);
            let s = m.symbols.sym("tokens");
            let m = m.set_symbols(&HashMap::from([(s, TDim::Val(1))]))?;
            let sym = ms(&mut t);
            (m, typed, sym)
        };
        let mut d = Optimizer::declutter();
        d.passes.retain(|p| {
            let n = format!("{p:?}");
            n.starts_with("PropConst") || n == "declutter"
        });
        d.optimize(&mut m)?;
        let dec = ms(&mut t);
        undertone::compose::dynquant::substitute(&mut m)?;
        undertone::compose::matvec::substitute(&mut m)?;
        let sub = ms(&mut t);
        Optimizer::codegen().optimize(&mut m)?;
        let cg = ms(&mut t);
        println!("nodes {}", m.nodes.len());
        let p = m.into_runnable()?;
        let _s = p.spawn()?;
        let run = ms(&mut t);
        println!("read {read} parse {parse} typed {typed} symbols {sym} declutter {dec} substitute {sub} codegen {cg} runnable {run}");
    }
    Ok(())
}
