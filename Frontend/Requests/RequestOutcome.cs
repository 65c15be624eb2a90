namespace StreamInfer.Frontend.Requests;

/// <summary>
/// How a request ended: with the grid's answer (<see cref="Result"/>, <see cref="Done"/> or <see cref="Error"/>), with
/// an error of the frontend's own (a refusal, the watchdog, a silo's loss), cancelled by its client, or abandoned
/// (nobody is left to answer). <see cref="FromGrid"/> says the grid itself answered: whatever it read of the request
/// (a binary body's buffer, see <see cref="Protocol.RentedBytes"/>) it no longer reads.
/// </summary>
internal readonly record struct RequestOutcome(
    InferResult? Result = null,
    GenerationDone? Done = null,
    InferError? Error = null,
    bool Cancelled = false,
    bool Abandoned = false,
    bool FromGrid = false)
{
    /// <summary>Ended by its client's cancel.</summary>
    public static RequestOutcome CancelledByClient => new(Cancelled: true);

    /// <summary>Ended because its caller is gone: nothing is written.</summary>
    public static RequestOutcome Gone => new(Abandoned: true);

    /// <summary>The end the grid delivered.</summary>
    public static RequestOutcome From(Delivery delivery) => new(delivery.Result, delivery.Done, delivery.Error, FromGrid: true);

    /// <summary>Ended with <paramref name="error"/>.</summary>
    public static RequestOutcome Failed(InferError error) => new(Error: error);
}
