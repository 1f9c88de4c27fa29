"""The study's headline numbers, gathered from the result tables into one Markdown page."""
