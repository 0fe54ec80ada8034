"""What the provider tells the platform about its work: OpenLineage facets and StatsD metrics."""
