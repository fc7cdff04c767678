"""What several bench scripts share (imported with bench/ on the path; not a bench itself)."""
