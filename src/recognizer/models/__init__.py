"""Models: what a served model is (spec, labels, preprocessing) and how it is loaded."""
