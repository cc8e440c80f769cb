use clap::Parser;

fn main() {
    let cli = rivet_image_builder::cli::Cli::parse();
    if let Err(err) = rivet_image_builder::run(cli) {
        eprintln!("rivet-image-builder: error: {err:#}");
        std::process::exit(1);
    }
}
