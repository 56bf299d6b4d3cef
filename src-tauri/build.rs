//! Declares the IPC commands of src-tauri/command_list.rs to Tauri, and writes what else is
//! made from that list: the window's capability, and the TypeScript map of each command's
//! arguments and result, read from the command's signature in src-tauri/commands.rs.

use std::path::Path;

#[path = "build/signatures.rs"]
mod signatures;

/// The names in command_list.rs, as strings.
macro_rules! tunelab_commands {
    ($($name:ident),* $(,)?) => {
        &[$(stringify!($name)),*]
    };
}

const COMMANDS: &[&str] = include!("command_list.rs");

fn main() {
    println!("cargo:rerun-if-changed=src-tauri/command_list.rs");
    println!("cargo:rerun-if-changed=src-tauri/commands.rs");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    write_if_changed(
        &root.join("src-tauri/capabilities/default.json"),
        &capability(COMMANDS),
    );
    let source = root.join("src-tauri/commands.rs");
    let signatures =
        signatures::read(&source, COMMANDS).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
    write_if_changed(
        &root.join("ui/src/bindings/Commands.ts"),
        &signatures::typescript(&signatures),
    );
    let manifest = tauri_build::AppManifest::new().commands(COMMANDS);
    let attrs = tauri_build::Attributes::new()
        .capabilities_path_pattern("src-tauri/capabilities/**/*")
        .app_manifest(manifest);
    tauri_build::try_build(attrs).expect("tauri build step failed");
}

/// The main window may call these commands, and listen to events, and nothing else.
fn capability(commands: &[&str]) -> String {
    let mut permissions = vec!["core:event:default".to_string()];
    permissions.extend(
        commands
            .iter()
            .map(|name| format!("allow-{}", name.replace('_', "-"))),
    );
    let list = permissions
        .iter()
        .map(|p| format!("    \"{p}\""))
        .collect::<Vec<_>>()
        .join(",\n");
    format!(
        "{{\n  \"$schema\": \"../../gen/schemas/desktop-schema.json\",\n  \"identifier\": \"default\",\n  \
         \"description\": \"The main window may call Tunelab's own commands and nothing else. Written by build.rs from src-tauri/command_list.rs.\",\n  \
         \"windows\": [\"main\"],\n  \"permissions\": [\n{list}\n  ]\n}}\n"
    )
}

/// Writes `text` to `path` unless it holds it already (an unchanged file keeps its time, so
/// nothing that watches it rebuilds).
fn write_if_changed(path: &Path, text: &str) {
    if std::fs::read_to_string(path).ok().as_deref() == Some(text) {
        return;
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}
