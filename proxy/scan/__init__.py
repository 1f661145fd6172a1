"""Content scanning: sniff the format, run every engine that applies, merge findings into a ScanReport."""
