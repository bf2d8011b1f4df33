fn main() {
    println!("dns-agent: not wired yet");
}
