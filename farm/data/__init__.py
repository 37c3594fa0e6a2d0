"""Reference data: simulated showers, Pythia jets, training sources and seeded splits."""
