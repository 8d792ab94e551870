"""Tables and plots from run directories (pure functions of the rows in eval.csv / metrics.csv)."""
