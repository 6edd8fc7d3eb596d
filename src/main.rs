//! The `pidwatch` binary: parse, run, exit with the code the library chose.

fn main() {
    std::process::exit(pidwatch::main_entry());
}
