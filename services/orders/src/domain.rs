//! Orders, their items and statuses, and the rules on them.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use orderly_core::FieldError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum OrderStatus {
    Pending,
    Paid,
    Shipped,
    Canceled,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Paid => "PAID",
            Self::Shipped => "SHIPPED",
            Self::Canceled => "CANCELED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PENDING" => Some(Self::Pending),
            "PAID" => Some(Self::Paid),
            "SHIPPED" => Some(Self::Shipped),
            "CANCELED" => Some(Self::Canceled),
            _ => None,
        }
    }

    /// PENDING→PAID|CANCELED, PAID→SHIPPED|CANCELED; nothing else.
    pub fn can_become(self, to: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, to),
            (Pending, Paid) | (Pending, Canceled) | (Paid, Shipped) | (Paid, Canceled)
        )
    }
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderItem {
    pub name: String,
    pub price: f64,
    pub quantity: i64,
}

/// The order as the API shows it (compat field names and order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Order {
    pub id: Uuid,
    pub user_id: i64,
    pub items: Vec<OrderItem>,
    pub total_price: f64,
    pub status: OrderStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// `POST /orders/` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderCreate {
    pub items: Vec<OrderItem>,
    pub total_price: f64,
}

/// `PATCH /orders/{id}/` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderStatusUpdate {
    pub status: OrderStatus,
}

/// A validated order to store.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidOrder {
    pub items: Vec<OrderItem>,
    pub total_cents: i64,
}

const MAX_ITEMS: usize = 1000;
const MAX_NAME_CHARS: usize = 200;
const MAX_PRICE: f64 = 1e10;
const MAX_QUANTITY: i64 = 1_000_000;

/// Amounts (a line, a total) must stay below this many cents, where f64 still
/// counts every cent exactly.
const MAX_CENTS: i64 = 9_000_000_000_000_000;

/// Money in whole cents; `None` when it is not a finite amount we can hold.
pub fn to_cents(amount: f64) -> Option<i64> {
    let cents = (amount * 100.0).round();
    (amount.is_finite() && cents.abs() < MAX_CENTS as f64).then_some(cents as i64)
}

pub fn from_cents(cents: i64) -> f64 {
    cents as f64 / 100.0
}

impl OrderCreate {
    /// Every rule at once, so a client sees all its mistakes in one 422.
    pub fn validate(self) -> Result<ValidOrder, Vec<FieldError>> {
        let mut errors = Vec::new();
        let at = |path: Vec<Value>, msg: &str, kind: &str| FieldError::body(&path, msg, kind);
        if self.items.is_empty() {
            errors.push(at(
                vec![json!("items")],
                "List should have at least 1 item",
                "too_short",
            ));
        }
        if self.items.len() > MAX_ITEMS {
            errors.push(at(
                vec![json!("items")],
                &format!("List should have at most {MAX_ITEMS} items"),
                "too_long",
            ));
        }
        let mut sum_cents: i64 = 0;
        for (i, item) in self.items.iter().enumerate() {
            let path = |field: &str| vec![json!("items"), json!(i), json!(field)];
            let name_len = item.name.trim().chars().count();
            if name_len == 0 || name_len > MAX_NAME_CHARS {
                errors.push(at(
                    path("name"),
                    &format!("Name must have 1 to {MAX_NAME_CHARS} characters"),
                    "string_length",
                ));
            } else if item.name.contains('\0') {
                // PostgreSQL text and JSONB cannot hold U+0000: refuse it in every store alike.
                errors.push(at(
                    path("name"),
                    "Name must not contain NUL characters",
                    "string_pattern_mismatch",
                ));
            }
            let price_ok = item.price > 0.0 && item.price <= MAX_PRICE;
            if !price_ok {
                errors.push(at(
                    path("price"),
                    &format!("Input should be greater than 0 and at most {MAX_PRICE}"),
                    "greater_than",
                ));
            }
            let quantity_ok = (1..=MAX_QUANTITY).contains(&item.quantity);
            if !quantity_ok {
                errors.push(at(
                    path("quantity"),
                    &format!("Input should be between 1 and {MAX_QUANTITY}"),
                    "greater_than",
                ));
            }
            // Price and quantity are bounded, so the product is finite; but it can
            // still be more cents than a total may hold, and such a line must not
            // silently drop out of the sum the total is checked against.
            match to_cents(item.price * item.quantity as f64) {
                Some(cents) => sum_cents = sum_cents.saturating_add(cents),
                None if price_ok && quantity_ok => errors.push(at(
                    vec![json!("items"), json!(i)],
                    &format!(
                        "price x quantity must be less than {}",
                        from_cents(MAX_CENTS)
                    ),
                    "less_than",
                )),
                None => {}
            }
        }
        let total_cents = to_cents(self.total_price);
        match total_cents {
            Some(t) if t > 0 => {
                if errors.is_empty() && t != sum_cents {
                    errors.push(at(
                        vec![json!("total_price")],
                        &format!(
                            "total_price {} does not match the sum of price x quantity {}",
                            self.total_price,
                            from_cents(sum_cents)
                        ),
                        "value_error",
                    ));
                }
            }
            _ => errors.push(at(
                vec![json!("total_price")],
                "Input should be greater than 0",
                "greater_than",
            )),
        }
        if errors.is_empty() {
            Ok(ValidOrder {
                items: self.items,
                total_cents: total_cents.unwrap_or_default(),
            })
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(price: f64, quantity: i64) -> OrderItem {
        OrderItem {
            name: "x".into(),
            price,
            quantity,
        }
    }

    #[test]
    fn only_the_legal_transitions_are_allowed() {
        use OrderStatus::*;
        let all = [Pending, Paid, Shipped, Canceled];
        let legal: Vec<_> = all
            .iter()
            .flat_map(|a| all.iter().map(move |b| (*a, *b)))
            .filter(|(a, b)| a.can_become(*b))
            .collect();
        assert_eq!(
            legal,
            vec![
                (Pending, Paid),
                (Pending, Canceled),
                (Paid, Shipped),
                (Paid, Canceled)
            ]
        );
    }

    #[test]
    fn the_readme_order_adds_up_to_the_cent() {
        let o = OrderCreate {
            items: vec![item(999.99, 1), item(29.99, 2)],
            total_price: 1059.97,
        };
        assert_eq!(o.validate().unwrap().total_cents, 105997);
    }

    #[test]
    fn a_wrong_total_is_rejected() {
        let o = OrderCreate {
            items: vec![item(10.0, 2)],
            total_price: 20.01,
        };
        let errs = o.validate().unwrap_err();
        assert_eq!(errs[0].loc, vec![json!("body"), json!("total_price")]);
    }

    #[test]
    fn empty_items_and_non_positive_values_are_rejected() {
        assert!(
            OrderCreate {
                items: vec![],
                total_price: 1.0
            }
            .validate()
            .is_err()
        );
        let errs = OrderCreate {
            items: vec![item(-1.0, 0)],
            total_price: 0.0,
        }
        .validate()
        .unwrap_err();
        assert_eq!(errs.len(), 3);
    }

    #[test]
    fn a_line_too_large_to_count_is_rejected_not_left_out_of_the_total() {
        // Each within bounds, but 1e10 x 1e6 is more cents than a total may hold:
        // this order used to pass with total_price 1 (the big line was skipped).
        let o = OrderCreate {
            items: vec![item(1e10, 1_000_000), item(1.0, 1)],
            total_price: 1.0,
        };
        let errs = o.validate().unwrap_err();
        assert_eq!(errs[0].loc, vec![json!("body"), json!("items"), json!(0)]);
        assert_eq!(errs[0].kind, "less_than");
    }

    #[test]
    fn a_name_with_a_nul_is_rejected_other_characters_are_kept() {
        let named = |name: &str| OrderCreate {
            items: vec![OrderItem {
                name: name.into(),
                price: 1.0,
                quantity: 1,
            }],
            total_price: 1.0,
        };
        let errs = named("a\0b").validate().unwrap_err();
        assert_eq!(
            errs[0].loc,
            vec![json!("body"), json!("items"), json!(0), json!("name")]
        );
        let odd = "'; DROP TABLE orders; -- ünï 💥 \u{202e}";
        assert_eq!(named(odd).validate().unwrap().items[0].name, odd);
    }

    #[test]
    fn absurd_amounts_do_not_overflow() {
        let errs = OrderCreate {
            items: vec![item(1e300, 1_000_000)],
            total_price: 1e308,
        }
        .validate()
        .unwrap_err();
        assert!(!errs.is_empty());
    }
}
