"""What a finished study says: the loaded study, effect tables, plots, the report and ablations."""
