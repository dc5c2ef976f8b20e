"""What a finished search yields: summary.json, the console table, report.html (plots and
importance), the exported model, predictions, and the TensorBoard board."""
