//! Why did the model read this digit as it did? Integrated gradients and occlusion on one MNIST test image,
//! from Rust. Run: cargo run --release --example explain [MODEL]
//! MODEL defaults to mnist_model.safetensors (what `--example mnist` writes); without it a small dense
//! network is trained for one epoch first (about 5 s).
use kiln::explain::{self, At, Probe, Rule, Target};
use kiln::prelude::*;

fn main() -> kiln::Result<()> {
    let (train, test) = kiln::data::mnist::load(concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/mnist"))?;
    let path = std::env::args().nth(1).unwrap_or_else(|| "mnist_model.safetensors".into());
    let model = if std::path::Path::new(&path).exists() {
        Sequential::load(&path)?
    } else {
        println!("{path} not found: training a small dense network for one epoch");
        let mut m = Sequential::new(&[28, 28, 1]);
        m.add(Flatten::new())?;
        m.add(Dense::new(128).activation(Activation::Relu))?;
        m.add(Dense::new(10).activation(Activation::Softmax))?;
        m.compile(Adam::default(), Loss::CategoricalCrossentropy, &[Metric::Accuracy])?;
        m.fit(&train.x, &train.y, FitOptions { epochs: 1, batch_size: 64, ..Default::default() })?;
        m
    };

    // x: [1, 28, 28, 1], the first test image (a 7).
    let x = test.x.slice_rows(0, 1);
    let p = model.predict(&x, 1)?;
    let class = p.argmax_rows()[0];
    println!("predicted {class} with p = {:.3}", p.data()[class]);

    // The probe differentiates p[class] with respect to the image's 784 values.
    let probe = Probe::new(&model, &[&x], At::Inputs, Target::class(class))?;
    let ig = explain::integrated_gradients(&probe, &[0.0; 784], 50, Rule::GaussLegendre)?;
    let gap = ig.output - ig.baseline_output.unwrap_or(0.0);
    println!(
        "integrated gradients: Σ attributions {:.4} for f(x) − f(black) = {gap:.4} (completeness error {:.1e})",
        gap + ig.delta().unwrap_or(0.0),
        ig.delta().unwrap_or(0.0)
    );
    let occ = explain::occlusion(&probe, &[4, 4, 1], &[2, 2, 1], 0.0)?;

    // Each 2x2 block of pixels as one character: '+' toward the class, '-' against it, '.' neither.
    for (name, values) in [("integrated gradients", &ig.values), ("occlusion, 4x4 windows", &occ.values)] {
        let scale = values.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
        println!("\n{name} (strongest |a| = {scale:.4})");
        for r in (0..28).step_by(2) {
            let line: String = (0..28)
                .step_by(2)
                .map(|c| {
                    let a: f32 = [(r, c), (r + 1, c), (r, c + 1), (r + 1, c + 1)]
                        .iter()
                        .map(|&(i, j)| values[i * 28 + j])
                        .sum::<f32>()
                        / scale;
                    match a {
                        a if a > 0.3 => "++",
                        a if a > 0.05 => "+ ",
                        a if a < -0.3 => "--",
                        a if a < -0.05 => "- ",
                        _ if x.data()[r * 28 + c] > 0.3 => ". ",
                        _ => "  ",
                    }
                })
                .collect();
            println!("  {line}");
        }
    }
    Ok(())
}
