"""Driver-side planning of what a read or write reaches: where files are and how the executors reach them."""
