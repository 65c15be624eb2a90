namespace StreamInfer.Grains.Models;

/// <summary>
/// One loaded model version on one device, counted while anything uses it: the catalog holds it while the version
/// serves, and every request (or decoding sequence) admitted against it holds it until it ends. A rollout's commit drops
/// the catalog's hold; when the last request that started on the old version ends, the instance is released. So work in
/// flight finishes on the version it started with, and nothing frees a session under a running batch.
/// </summary>
public sealed class ModelLease
{
    private readonly Action<IInferenceModel> _released;
    private int _holds = 1;

    /// <summary>A lease held once, by its creator.</summary>
    public ModelLease(IInferenceModel model, Action<IInferenceModel> released)
    {
        Model = model;
        _released = released;
    }

    /// <summary>The model instance.</summary>
    public IInferenceModel Model { get; }

    /// <summary>Whether every hold has been dropped (the instance is released, or being released).</summary>
    public bool Released => Volatile.Read(ref _holds) == 0;

    /// <summary>Takes a hold, unless the lease has already been released.</summary>
    public bool TryAcquire()
    {
        var holds = Volatile.Read(ref _holds);
        while (holds > 0)
        {
            var seen = Interlocked.CompareExchange(ref _holds, holds + 1, holds);
            if (seen == holds)
            {
                return true;
            }

            holds = seen;
        }

        return false;
    }

    /// <summary>Drops a hold; the last one releases the instance.</summary>
    public void Release()
    {
        if (Interlocked.Decrement(ref _holds) == 0)
        {
            _released(Model);
        }
    }
}
