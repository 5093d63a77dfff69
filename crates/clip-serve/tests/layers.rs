//! The module layer order declared in this crate's root file holds, and no modules import each other.

#[test]
fn imports_follow_the_declared_layer_order_without_cycles() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    if let Err(problems) = clip_layers::check(&src) {
        panic!("layer violations:\n{problems}");
    }
}
