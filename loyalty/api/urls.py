from django.urls import path

from loyalty.api.rewards import (
    BadgeListApi,
    CouponIssueApi,
    CouponRedeemApi,
    CouponValidateApi,
    RewardListApi,
    RewardRedeemApi,
)
from loyalty.api.views import (
    PointsBalanceApi,
    PointsEarnApi,
    PointsHistoryApi,
    PointsRedeemApi,
    PointsReverseApi,
    TierListApi,
)

urlpatterns = [
    path("members/<str:external_id>/points/", PointsBalanceApi.as_view(), name="points-balance"),
    path("members/<str:external_id>/points/history/", PointsHistoryApi.as_view(), name="points-history"),
    path("points/earn/", PointsEarnApi.as_view(), name="points-earn"),
    path("points/redeem/", PointsRedeemApi.as_view(), name="points-redeem"),
    path("points/reverse/", PointsReverseApi.as_view(), name="points-reverse"),
    path("tiers/", TierListApi.as_view(), name="tiers-list"),
    path("badges/", BadgeListApi.as_view(), name="badges-list"),
    path("rewards/", RewardListApi.as_view(), name="rewards-list"),
    path("rewards/redeem/", RewardRedeemApi.as_view(), name="rewards-redeem"),
    path("coupons/issue/", CouponIssueApi.as_view(), name="coupons-issue"),
    path("coupons/validate/", CouponValidateApi.as_view(), name="coupons-validate"),
    path("coupons/redeem/", CouponRedeemApi.as_view(), name="coupons-redeem"),
]
