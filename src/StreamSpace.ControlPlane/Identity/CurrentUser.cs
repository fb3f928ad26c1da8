using System.Security.Claims;

namespace StreamSpace.ControlPlane.Identity;

/// <summary>The caller, as established by token validation (role read fresh from the database).</summary>
public sealed record CurrentUser(string Id, string Username, string Role)
{
    public bool IsAdmin => Role == Roles.Admin;

    public static CurrentUser From(ClaimsPrincipal principal) => new(
        principal.FindFirstValue(ClaimTypes.NameIdentifier) ?? throw new InvalidOperationException("No user id claim"),
        principal.FindFirstValue(ClaimTypes.Name) ?? "",
        principal.FindFirstValue(ClaimTypes.Role) ?? Roles.User);
}
