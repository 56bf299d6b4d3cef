//! The TypeScript view of each IPC command's signature, read from src-tauri/commands.rs, so
//! the window's client cannot pass an argument or expect a result the backend does not have.
//!
//! Rust types map as serde sends them: `String` and paths to `string`, numbers to `number`,
//! `Option<T>` to an argument that may be left out or `null`, `Vec<T>` to `T[]`,
//! `Channel<E>` to Tauri's `Channel<E>`, and every other named type to its ts-rs binding
//! (`ui/src/bindings/<Name>.ts`). Tauri's own injected arguments (`State`, `AppHandle`,
//! `Window`) are not the window's to pass and are left out; argument names turn to camelCase,
//! as Tauri expects them. A result is the `Ok` side of `Result<T, ApiError>`, or `T` itself.

use std::collections::BTreeSet;
use std::path::Path;

/// One command as the window sees it.
pub struct Signature {
    name: String,
    /// (camelCase name, TypeScript type, may be left out)
    args: Vec<(String, String, bool)>,
    result: String,
    /// The binding types it names.
    uses: BTreeSet<String>,
}

/// The signatures of `commands`, in their order, from the `#[tauri::command]` functions of
/// `source`.
pub fn read(source: &Path, commands: &[&str]) -> Result<Vec<Signature>, String> {
    let text = std::fs::read_to_string(source).map_err(|e| e.to_string())?;
    let file = syn::parse_file(&text).map_err(|e| format!("does not parse: {e}"))?;
    let functions: Vec<&syn::ItemFn> = file
        .items
        .iter()
        .filter_map(|item| match item {
            syn::Item::Fn(f) if is_command(f) => Some(f),
            _ => None,
        })
        .collect();
    commands
        .iter()
        .map(|name| {
            let f = functions
                .iter()
                .find(|f| f.sig.ident == name)
                .ok_or_else(|| format!("command `{name}` has no #[tauri::command] function"))?;
            signature(f).map_err(|e| format!("command `{name}`: {e}"))
        })
        .collect()
}

fn is_command(f: &syn::ItemFn) -> bool {
    f.attrs.iter().any(|a| {
        let segments: Vec<String> = a
            .path()
            .segments
            .iter()
            .map(|s| s.ident.to_string())
            .collect();
        segments == ["tauri", "command"] || segments == ["command"]
    })
}

/// Arguments Tauri fills in itself.
const INJECTED: &[&str] = &["State", "AppHandle", "Window", "WebviewWindow", "Webview"];

fn signature(f: &syn::ItemFn) -> Result<Signature, String> {
    let mut uses = BTreeSet::new();
    let mut args = Vec::new();
    for input in &f.sig.inputs {
        let syn::FnArg::Typed(arg) = input else {
            return Err("takes `self`".into());
        };
        let syn::Pat::Ident(pat) = &*arg.pat else {
            return Err("an argument is a pattern, not a name".into());
        };
        if INJECTED.contains(&outer_name(&arg.ty).as_str()) {
            continue;
        }
        let (ts, optional) = match generic_of(&arg.ty, "Option") {
            Some(inner) => (format!("{} | null", ts_type(inner, &mut uses)?), true),
            None => (ts_type(&arg.ty, &mut uses)?, false),
        };
        args.push((camel_case(&pat.ident.to_string()), ts, optional));
    }
    let result = match &f.sig.output {
        syn::ReturnType::Default => "void".to_string(),
        syn::ReturnType::Type(_, ty) => match generic_of(ty, "Result") {
            Some(ok) => ts_type(ok, &mut uses)?,
            None => ts_type(ty, &mut uses)?,
        },
    };
    Ok(Signature {
        name: f.sig.ident.to_string(),
        args,
        result,
        uses,
    })
}

/// The last path segment's name of `ty` (`State` for `tauri::State<'_, T>`).
fn outer_name(ty: &syn::Type) -> String {
    match ty {
        syn::Type::Path(p) => p
            .path
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// The first type argument of `ty` when `ty` is `wrapper<...>`.
fn generic_of<'a>(ty: &'a syn::Type, wrapper: &str) -> Option<&'a syn::Type> {
    let syn::Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != wrapper {
        return None;
    }
    let syn::PathArguments::AngleBracketed(generics) = &last.arguments else {
        return None;
    };
    generics.args.iter().find_map(|a| match a {
        syn::GenericArgument::Type(t) => Some(t),
        _ => None,
    })
}

fn ts_type(ty: &syn::Type, uses: &mut BTreeSet<String>) -> Result<String, String> {
    if let syn::Type::Tuple(t) = ty {
        if t.elems.is_empty() {
            return Ok("void".into());
        }
    }
    let syn::Type::Path(_) = ty else {
        return Err("a type that is not a plain path has no TypeScript mapping here".into());
    };
    let name = outer_name(ty);
    Ok(match name.as_str() {
        "String" | "PathBuf" => "string".into(),
        "bool" => "boolean".into(),
        "u8" | "u16" | "u32" | "i8" | "i16" | "i32" | "f32" | "f64" | "usize" | "u64" | "i64" => {
            "number".into()
        }
        "Option" => format!("{} | null", ts_type(inner(ty)?, uses)?),
        "Vec" => {
            let element = ts_type(inner(ty)?, uses)?;
            if element.contains(' ') {
                format!("({element})[]")
            } else {
                format!("{element}[]")
            }
        }
        "Channel" => format!("Channel<{}>", ts_type(inner(ty)?, uses)?),
        _ => {
            uses.insert(name.clone());
            name
        }
    })
}

fn inner(ty: &syn::Type) -> Result<&syn::Type, String> {
    generic_of(ty, &outer_name(ty))
        .ok_or_else(|| format!("`{}` without its type argument", outer_name(ty)))
}

fn camel_case(snake: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// `ui/src/bindings/Commands.ts`: the map from each command's name to its arguments and
/// result, which the client's one `call` function is typed by.
pub fn typescript(signatures: &[Signature]) -> String {
    let mut out = String::from(
        "// Written by src-tauri/build.rs from the signatures in src-tauri/commands.rs. Do not edit this file manually.\n\n",
    );
    let channels = signatures
        .iter()
        .any(|s| s.args.iter().any(|a| a.1.starts_with("Channel<")));
    if channels {
        out.push_str("import type { Channel } from '@tauri-apps/api/core';\n");
    }
    let uses: BTreeSet<&String> = signatures.iter().flat_map(|s| &s.uses).collect();
    for name in uses {
        out.push_str(&format!("import type {{ {name} }} from './{name}';\n"));
    }
    out.push_str(
        "\n/** Each IPC command the window may call: the arguments it takes and what it resolves with. */\nexport type Commands = {\n",
    );
    for s in signatures {
        let args = if s.args.is_empty() {
            "Record<string, never>".to_string()
        } else {
            let fields: Vec<String> = s
                .args
                .iter()
                .map(|(name, ty, optional)| {
                    format!("{name}{}: {ty}", if *optional { "?" } else { "" })
                })
                .collect();
            format!("{{ {} }}", fields.join("; "))
        };
        out.push_str(&format!(
            "  {}: {{ args: {args}; result: {} }};\n",
            s.name, s.result
        ));
    }
    out.push_str("};\n\n/** The name of every IPC command the window may call. */\nexport type Command = keyof Commands;\n");
    out
}
