"""Vision: what is in each analysed frame, cheaply: gate, detector backends, model registry and
converters, tracker, anonymizer."""
