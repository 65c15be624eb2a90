using System.Globalization;

namespace StreamInfer.OnnxBench;

/// <summary>
/// Reads histograms from a grid's Prometheus text (<c>GET /metrics</c>) so a bench can report what the server measured
/// over its own window: two scrapes, the difference of their cumulative buckets, percentiles interpolated within the
/// bucket that holds them (as Prometheus' histogram_quantile does). Label sets are summed unless a filter is given.
/// </summary>
internal sealed class PrometheusHistograms
{
    private readonly Dictionary<string, SortedDictionary<double, double>> _buckets;

    private PrometheusHistograms(Dictionary<string, SortedDictionary<double, double>> buckets) => _buckets = buckets;

    /// <summary>From one scrape's text: the histograms whose names are given, summed over label sets that contain every
    /// one of <paramref name="labels"/> (e.g. <c>path="ws"</c>).</summary>
    public static PrometheusHistograms Parse(string text, IReadOnlyList<string> names, params string[] labels)
    {
        var buckets = names.ToDictionary(n => n, _ => new SortedDictionary<double, double>(), StringComparer.Ordinal);
        foreach (var line in text.Split('\n'))
        {
            foreach (var name in names)
            {
                // name_bucket{a="b",...,le="0.001"} 42
                if (!line.StartsWith(name + "_bucket{", StringComparison.Ordinal) || !labels.All(l => line.Contains(l, StringComparison.Ordinal)))
                {
                    continue;
                }

                var le = line.IndexOf("le=\"", StringComparison.Ordinal);
                var close = line.IndexOf('"', le + 4);
                var bound = line[(le + 4)..close] == "+Inf" ? double.PositiveInfinity : double.Parse(line[(le + 4)..close], CultureInfo.InvariantCulture);
                var value = double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
                buckets[name][bound] = buckets[name].GetValueOrDefault(bound) + value;
            }
        }

        return new PrometheusHistograms(buckets);
    }

    /// <summary>The sum of a counter's (or gauge's) series named <paramref name="name"/> whose labels contain every one
    /// of <paramref name="labels"/>; 0 when there is none.</summary>
    public static double Counter(string text, string name, params string[] labels)
    {
        double sum = 0;
        foreach (var line in text.Split('\n'))
        {
            if ((line.StartsWith(name + "{", StringComparison.Ordinal) || line.StartsWith(name + " ", StringComparison.Ordinal))
                && labels.All(l => line.Contains(l, StringComparison.Ordinal)))
            {
                sum += double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
            }
        }

        return sum;
    }

    /// <summary>
    /// The <paramref name="p"/>th percentile of <paramref name="name"/>'s observations between
    /// <paramref name="before"/> and this scrape, in milliseconds (the histograms are in seconds); NaN with none.
    /// </summary>
    public double PercentileMs(PrometheusHistograms before, string name, double p)
    {
        var after = _buckets[name];
        var earlier = before._buckets[name];
        var bounds = after.Keys.ToList();
        var counts = bounds.Select(b => after[b] - earlier.GetValueOrDefault(b)).ToList();
        var total = counts.Count == 0 ? 0 : counts[^1];
        if (total <= 0)
        {
            return double.NaN;
        }

        var rank = p / 100 * total;
        for (var i = 0; i < bounds.Count; i++)
        {
            if (counts[i] >= rank)
            {
                var lower = i == 0 ? 0 : bounds[i - 1];
                if (double.IsPositiveInfinity(bounds[i]))
                {
                    return lower * 1000;
                }

                var below = i == 0 ? 0 : counts[i - 1];
                var inBucket = counts[i] - below;
                var fraction = inBucket <= 0 ? 1 : (rank - below) / inBucket;
                return (lower + ((bounds[i] - lower) * fraction)) * 1000;
            }
        }

        return double.NaN;
    }

    /// <summary>Observations of <paramref name="name"/> between <paramref name="before"/> and this scrape.</summary>
    public double Count(PrometheusHistograms before, string name)
        => _buckets[name].Count == 0 ? 0 : _buckets[name].Values.Last() - before._buckets[name].Values.LastOrDefault();
}
