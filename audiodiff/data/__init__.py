"""A folder of audio becomes training data: files found, decoded once into a mel cache, cropped; class labels."""
