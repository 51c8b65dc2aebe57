"""Restaurants registering themselves: ``/signup`` creates the restaurant (the registry, as
the API does) and its sign-in account, signs the browser in, and shows the API token once."""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from kitchencam import appkeys, sessions
from kitchencam.accounts import check_email
from kitchencam.auth import Principal
from kitchencam.models import RestaurantCreate
from kitchencam.pages import render
from kitchencam.portalforms import field_errors, restaurant_input, text
from kitchencam.registry import Conflict
from kitchencam.users import check_password

routes = web.RouteTableDef()


@routes.get("/signup")
async def signup_form(request: web.Request) -> web.Response:
    """The restaurant registration form."""
    return await render(request, "signup.html", values={}, errors={})


@routes.post("/signup")
async def signup(request: web.Request) -> web.Response:
    """Register the restaurant and its sign-in account, sign it in, and show its API token
    (once)."""
    form = await request.post()
    values: dict[str, object] = {**restaurant_input(form), "email": text(form, "email").strip()}
    errors: dict[str, str] = {}
    data: RestaurantCreate | None = None
    try:
        data = RestaurantCreate.model_validate(restaurant_input(form))
    except ValidationError as err:
        errors.update(field_errors(err))
    email = ""
    try:
        email = check_email(text(form, "email"))
    except ValueError as err:
        errors["email"] = str(err)
    password = text(form, "password")
    try:
        check_password(password)
    except ValueError as err:
        errors["password"] = str(err)
    if password != text(form, "password_again"):
        errors.setdefault("password_again", "the two passwords differ")
    accounts = request.app[appkeys.ACCOUNTS]
    if email and await accounts.exists(email):
        errors["email"] = "an account with this e-mail address exists already; sign in instead"
    if errors or data is None:
        return await render(request, "signup.html", status=422, values=values, errors=errors)
    registry = request.app[appkeys.REGISTRY]
    try:
        restaurant, token = await registry.create_restaurant(data)
    except Conflict as err:
        errors["licence_number"] = str(err).replace("with its token", "instead")
        return await render(request, "signup.html", status=409, values=values, errors=errors)
    try:
        await accounts.create(email, restaurant.id, password)
    except Conflict as err:
        await registry.delete_restaurant(restaurant.id)
        errors["email"] = str(err)
        return await render(request, "signup.html", status=409, values=values, errors=errors)
    request.app[appkeys.METRICS].registrations.labels("restaurant").inc()
    cookie = await sessions.start(request, Principal("restaurant", restaurant.id), restaurant.name)
    response = await render(
        request, "signup_done.html", status=201, restaurant=restaurant, token=token
    )
    sessions.set_cookie(request, response, sessions.SESSION_COOKIE, cookie)
    return response
