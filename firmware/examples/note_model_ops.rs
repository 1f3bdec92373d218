//! Where the note model's decoding step spends its time, per kind of op (tract's plan as
//! `undertone` loads it), after a cache of P entries:
//!
//!   cargo run --release -p undertone --example note_model_ops [P] [STEPS] [MODEL]
//!
//! (defaults: P = 100, 300 steps, models/notes/notes_int8.onnx of the checkout; another
//! model needs its model.json beside it).
//! Prints the load time, the mean step time with and without the per-op timing, and one
//! line per kind of op: microseconds per step, nodes, share of the timed step.

use std::time::Instant;

use undertone::compose::model::NoteModel;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let past: usize = args.next().map_or(Ok(100), |a| a.parse())?;
    let steps: usize = args.next().map_or(Ok(300), |a| a.parse())?;
    let path = args
        .next()
        .unwrap_or_else(|| "models/notes/notes_int8.onnx".into());
    let t = Instant::now();
    let mut model = NoteModel::load(std::path::Path::new(&path))?;
    println!("load {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    model.profile_ops(past, steps.min(20))?; // warm-up
    let ops = model.profile_ops(past, steps)?;
    let total: f64 = ops.iter().map(|o| o.seconds).sum();
    println!(
        "P = {past}: {:.3} ms per step (sum of the ops, {steps} steps)",
        total * 1e3 / steps as f64
    );
    for o in &ops {
        println!(
            "{:9.1} us {:4} nodes {:5.1} %  {}",
            o.seconds * 1e6 / steps as f64,
            o.nodes,
            100.0 * o.seconds / total,
            o.op
        );
    }
    Ok(())
}
