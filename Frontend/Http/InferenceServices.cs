using StreamInfer.Grains.Metrics;
using Microsoft.Extensions.Options;
using StreamInfer.Frontend.Hosting;
using StreamInfer.Frontend.Requests;

namespace StreamInfer.Frontend.Http;

/// <summary>What an inference handler takes (as <c>[AsParameters]</c>): the submitter, the limits, the clock, the metrics, its logs.</summary>
internal readonly record struct InferenceServices(RequestSubmitter Submitter, IOptions<FrontendOptions> Options, TimeProvider Time, GridMetrics Metrics, ILoggerFactory Loggers)
{
    /// <summary>The largest body taken, in bytes (the frame limit).</summary>
    public int MaxBodyBytes => Options.Value.MaxFrameBytes;
}
