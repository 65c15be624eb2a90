using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;
using StreamInfer.Grains.Models.Onnx;
using StreamInfer.Grains.Models.Repository;

namespace StreamInfer.Tests.Grains.Models.Onnx;

/// <summary>Requests ONNX Runtime refuses, each run alone: one Warning line for the lot, each exception at Debug.</summary>
public sealed class RequestFailureLogTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "streaminfer-tests", Guid.NewGuid().ToString("N"));

    [Fact]
    public void Run_RefusedByOnnxRuntimeManyTimes_OneWarningWithoutStackTheExceptionsAtDebug()
    {
        // gather: y[b] = [1, 2, 3][i[b]]; an index past 2 passes the request checks and is refused by ONNX Runtime.
        var g = new OnnxGraphBuilder("gather");
        g.Input("i", TensorElementType.Int64, "batch");
        g.Node("Gather", [g.Constant("table", [1f, 2f, 3f], 3), "i"], "y", ("axis", 0L));
        g.Output("y", TensorElementType.Float32, "batch");
        g.Save(Path.Combine(_root, "gather", "1", "model.onnx"));
        File.WriteAllText(Path.Combine(_root, "gather", "config.json"), """{ "kind": "tensor", "max_batch_size": 4 }""");
        var (definition, errors) = ModelRepositoryScanner.ScanVersion(_root, "gather", "1");
        Assert.NotNull(definition);
        var log = new ListLogger();
        using var options = new SessionOptions();
        using var model = OnnxTensorModel.Load(definition, options, errors, log);
        Assert.NotNull(model);

        for (var n = 0; n < 5; n++)
        {
            var request = new InferRequest($"r{n}", "gather", [new NamedTensor("i", new Tensor(TensorElementType.Int64, [1], BitConverter.GetBytes(7L), []))], null, null, string.Empty);
            Assert.Equal(ErrorCode.InvalidInput, Assert.Single(model.Run([request])).Error?.Code);
        }

        var warning = Assert.Single(log.Entries, e => e.Level == LogLevel.Warning);
        Assert.Null(warning.Exception);
        Assert.Equal(5, log.Entries.Count(e => e.Level == LogLevel.Debug && e.Exception is OnnxRuntimeException));
    }

    public void Dispose()
    {
        if (Directory.Exists(_root))
        {
            Directory.Delete(_root, recursive: true);
        }
    }

    private sealed class ListLogger : ILogger
    {
        public ConcurrentQueue<(LogLevel Level, Exception? Exception)> Entries { get; } = new();

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            => Entries.Enqueue((logLevel, exception));
    }
}
