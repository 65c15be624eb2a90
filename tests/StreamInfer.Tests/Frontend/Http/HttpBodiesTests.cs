using Microsoft.AspNetCore.Http;
using StreamInfer.Frontend.Http;

namespace StreamInfer.Tests.Frontend.Http;

/// <summary>How a body is read into a pooled buffer: memory follows the bytes that arrive, not the length declared.</summary>
public sealed class HttpBodiesTests
{
    private const int Max = 256 * 1024 * 1024;

    [Fact]
    public async Task ReadPooledAsync_HugeDeclaredLengthCutShort_AllocatesAboutTheBytesThatArrived()
    {
        var stream = new ChunkedStream([42], chunk: 1);
        var context = Context(stream, contentLength: Max);

        // The stream answers at once, so the whole read runs on this thread and its allocations are counted here.
        var before = GC.GetAllocatedBytesForCurrentThread();
        var reading = HttpBodies.ReadPooledAsync(context.Request, Max, "too large", CancellationToken.None);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.True(reading.IsCompleted);
        var (body, tooLarge) = await reading;
        Assert.Null(tooLarge);
        Assert.Equal([42], body!.Memory.ToArray());
        body.Return();
        Assert.True(allocated < 4 * HttpBodies.FirstRentBytes, $"{allocated} bytes allocated for a 1-byte body declared as {Max}");
        Assert.True(stream.LargestOffer <= HttpBodies.FirstRentBytes, $"the first read was offered {stream.LargestOffer} bytes");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task ReadPooledAsync_BodyPastTheFirstRent_ReadWholeAsTheBufferGrows(bool declared)
    {
        var bytes = new byte[(3 * HttpBodies.FirstRentBytes) + 5];
        new Random(7).NextBytes(bytes);
        var context = Context(new ChunkedStream(bytes, chunk: 100_000), declared ? bytes.Length : null);

        var (body, tooLarge) = await HttpBodies.ReadPooledAsync(context.Request, Max, "too large", CancellationToken.None);

        Assert.Null(tooLarge);
        Assert.True(bytes.AsSpan().SequenceEqual(body!.Memory.Span));
        body.Return();
    }

    [Fact]
    public async Task ReadPooledAsync_DeclaredLengthPastTheLimit_RefusedBeforeReading()
    {
        var stream = new ChunkedStream([1, 2, 3], chunk: 3);
        var context = Context(stream, contentLength: 1001);

        var (body, tooLarge) = await HttpBodies.ReadPooledAsync(context.Request, 1000, "at most 1000", CancellationToken.None);

        Assert.Null(body);
        Assert.Equal(ErrorCode.PayloadTooLarge, tooLarge!.Code);
        Assert.Equal(0, stream.LargestOffer);
    }

    private static DefaultHttpContext Context(Stream body, long? contentLength)
    {
        var context = new DefaultHttpContext();
        context.Request.Body = body;
        context.Request.ContentLength = contentLength;
        return context;
    }

    /// <summary>A body that arrives at most <c>chunk</c> bytes a read, each read answered at once, and then ends;
    /// remembers the largest buffer a read offered.</summary>
    private sealed class ChunkedStream(byte[] bytes, int chunk) : Stream
    {
        private int _position;

        public int LargestOffer { get; private set; }

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
            => ValueTask.FromResult(Read(buffer.Span));

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            LargestOffer = Math.Max(LargestOffer, buffer.Length);
            var n = Math.Min(Math.Min(chunk, buffer.Length), bytes.Length - _position);
            bytes.AsSpan(_position, n).CopyTo(buffer);
            _position += n;
            return n;
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
