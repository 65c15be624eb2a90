using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace StreamInfer.Tests.Infrastructure;

/// <summary>Asks a model written by <see cref="TestModels.WriteScale"/> over <c>/predict</c>: which version answered, and y.</summary>
internal static class ScaleModel
{
    public static object Body(string model, float x) => new { model, inputs = new { x = new { dtype = "float32", shape = new[] { 1, 2 }, data = new[] { x, x } } } };

    /// <summary>The answering version and the first element of y; fails the test unless the answer is 200.</summary>
    public static async Task<(string Version, float Y)> PredictAsync(HttpClient http, string model, float x)
    {
        using var response = await http.PostAsJsonAsync("/predict", Body(model, x));
        var root = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.True(response.StatusCode == HttpStatusCode.OK, root.ToString());
        return (root.GetProperty("model_version").GetString()!, root.GetProperty("outputs").GetProperty("y").GetProperty("data")[0].GetSingle());
    }

    /// <summary>As <see cref="PredictAsync"/>, but a refusal (model not served yet) gives a null version instead of failing.</summary>
    public static async Task<(string? Version, float Y)> TryPredictAsync(HttpClient http, string model, float x)
    {
        using var response = await http.PostAsJsonAsync("/predict", Body(model, x));
        if (response.StatusCode != HttpStatusCode.OK)
        {
            return (null, float.NaN);
        }

        var root = await response.Content.ReadFromJsonAsync<JsonElement>();
        return (root.GetProperty("model_version").GetString(), root.GetProperty("outputs").GetProperty("y").GetProperty("data")[0].GetSingle());
    }
}
