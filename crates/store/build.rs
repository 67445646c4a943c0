// The migrations are embedded at compile time (`embed_migrations!`): rebuild when they change,
// including when one is added.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
