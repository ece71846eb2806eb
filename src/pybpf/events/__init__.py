"""Event sources that drive programs: packet captures now, probes and tracepoints later."""
