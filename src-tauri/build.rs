fn main() {
    // Every command the window may call is listed here and granted in src-tauri/capabilities/.
    let manifest = tauri_build::AppManifest::new().commands(&[
        "app_info",
        "hardware_report",
        "list_models",
        "add_model",
        "remove_model",
        "pull_model",
        "cancel_pull",
        "default_models",
        "install_default_models",
        "cancel_default_models",
        "chat",
        "cancel_chat",
        "list_runs",
        "run_metrics",
        "plan_training",
        "train",
        "resume_training",
        "cancel_training",
        "list_jobs",
        "list_comparisons",
        "comparison",
        "comparison_examples",
        "run_comparison",
        "cancel_comparison",
        "export_comparison",
        "preview_dataset",
        "list_knowledge_bases",
        "knowledge_base",
        "create_knowledge_base",
        "add_to_knowledge_base",
        "remove_knowledge_base",
        "remove_knowledge_source",
        "search_knowledge_base",
        "render_prompt",
        "list_prompts",
        "load_prompt",
        "save_prompt",
        "remove_prompt",
        "settings",
        "save_settings",
    ]);
    let attrs = tauri_build::Attributes::new()
        .capabilities_path_pattern("src-tauri/capabilities/**/*")
        .app_manifest(manifest);
    tauri_build::try_build(attrs).expect("tauri build step failed");
}
