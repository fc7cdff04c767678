"""Generated protobuf code; do not edit by hand. Regenerate with `make proto`."""
