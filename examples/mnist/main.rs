//! The Keras MNIST program, in kiln. Run: cargo run --release --example mnist
use kiln::prelude::*;

fn main() -> kiln::Result<()> {
    let (train, test) = kiln::data::mnist::load(concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/mnist"))?;
    let mut model = Sequential::new(&[28, 28, 1]);
    model.add(Conv2D::new(32, (3, 3)).activation(Activation::Relu))?;
    model.add(MaxPooling2D::new((2, 2)))?;
    model.add(Flatten::new())?;
    model.add(Dense::new(128).activation(Activation::Relu))?;
    model.add(Dropout::new(0.5))?;
    model.add(Dense::new(10).activation(Activation::Softmax))?;
    print!("{}", model.summary());
    model.compile(Adam::default(), Loss::CategoricalCrossentropy, &[Metric::Accuracy])?;
    let opts = FitOptions {
        epochs: std::env::var("EPOCHS").ok().and_then(|s| s.parse().ok()).unwrap_or(10),
        batch_size: 64,
        validation_split: 0.1,
        verbose: true,
        ..Default::default()
    };
    model.fit(&train.x, &train.y, opts)?;
    let scores = model.evaluate(&test.x, &test.y, 1000)?;
    println!("test {scores}");
    model.save("mnist_model.safetensors")?;
    Ok(())
}
