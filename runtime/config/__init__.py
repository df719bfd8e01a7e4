"""Engine configuration: ``config.yaml`` to typed settings (spec/modules.md §1)."""
