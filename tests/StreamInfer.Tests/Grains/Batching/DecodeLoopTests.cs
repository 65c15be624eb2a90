using Microsoft.Extensions.Logging.Abstractions;
using StreamInfer.Grains.Batching;
using StreamInfer.Grains.Devices;
using StreamInfer.Grains.Models.Decoding;
using StreamInfer.Tests.Infrastructure;

namespace StreamInfer.Tests.Grains.Batching;

/// <summary>The device side of continuous batching, driven directly on two loaded copies of tiny-lm (two versions).</summary>
public sealed class DecodeLoopTests
{
    private static readonly TimeSpan StepDeadline = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task NextAsync_OneVersionsPartOfAStepThrows_OnlyItsSequencesFailAndTheOtherVersionDecodesOn()
    {
        using var first = new OnnxModelsFixture();
        using var second = new OnnxModelsFixture();
        await first.InitializeAsync();
        await second.InitializeAsync();
        var v1 = first.Decoder(TinyLm.Name);
        var v2 = second.Decoder(TinyLm.Name);
        using var device = new DeviceWorker("cpu-loop-test", DeviceKind.Cpu, null, 16, NullLogger.Instance);
        var loop = new DecodeLoop(device, TimeProvider.System);

        var (healthy, error) = v1.Prepare(new InferRequest("ok", v1.Name, [], "stays", null, "test", null, new GenerationOptions(MaxTokens: 4, Temperature: 0)));
        Assert.Null(error);
        // A token id past the vocabulary: ONNX Runtime's Gather refuses it, so v2's part of every step it is in throws.
        var broken = new DecodeSequence(v2.Shape, v2.CachePool, [100_000], 4, new TokenSampler(0, null, null, 0), new TextAssembler(v2.Tokenizer), null);
        var good = new DecodeRunning(healthy!, v1, DateTimeOffset.MaxValue);
        var bad = new DecodeRunning(broken, v2, DateTimeOffset.MaxValue);
        loop.Join(good);
        loop.Join(bad);

        var step = await NextAsync(loop);
        Assert.NotNull(step.Failure);
        Assert.Equal([bad], step.Failed);
        Assert.Contains(good, step.Stepping);
        Assert.Contains(step.Outcomes, o => o.Running == good && o.Outcome.Token is not null);

        // The failed version's sequence is off the device; the other keeps a token per step until max_tokens.
        var tokens = 1;
        while (step.Outcomes.All(o => o.Outcome.FinishReason is null))
        {
            loop.Resume();
            step = await NextAsync(loop);
            Assert.Null(step.Failure);
            Assert.Equal([good], step.Stepping);
            tokens += step.Outcomes.Count(o => o.Outcome.Token is not null);
        }

        Assert.Equal(4, tokens);
        Assert.Equal(FinishReasons.Length, Assert.Single(step.Outcomes).Outcome.FinishReason);
        loop.Stop();
    }

    private static async Task<DecodeStepResult> NextAsync(DecodeLoop loop)
        => await loop.NextAsync().AsTask().WaitAsync(StepDeadline) ?? throw new InvalidOperationException("the loop stopped");
}
